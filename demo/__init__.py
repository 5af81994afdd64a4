"""The handseg Gradio app: `build_demo(model=...)` returns the gr.Blocks; app.py launches it."""

from demo.ui import build_demo

__all__ = ["build_demo"]

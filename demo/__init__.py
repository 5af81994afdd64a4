"""The handseg Gradio app: `build_demo(load_segmenters(...)[0])` returns the gr.Blocks; app.py launches it."""

from demo.ui import build_demo, load_segmenters

__all__ = ["build_demo", "load_segmenters"]

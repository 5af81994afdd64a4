"""Launch the handseg web app: `python app.py [--model DIR] [--host H] [--port P] [--share]`."""

from __future__ import annotations

import argparse
import os

# Offline by design: no usage analytics, no version check. Set before gradio is imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# Upload limit and how many segmentations run at once (each holds an image and its masks in memory).
MAX_FILE_SIZE = "50mb"
CONCURRENCY_LIMIT = 2


def main() -> None:
    parser = argparse.ArgumentParser(description="handseg web app")
    parser.add_argument("--model", help="hub folder or repo id to use (default: the shipped model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link (needs internet)")
    parser.add_argument(
        "--threads",
        type=int,
        help=f"CPU threads per segmentation (default: half the cores shared by the {CONCURRENCY_LIMIT} "
        "segmentations that run at once, at least 1: fast when other programs are busy too)",
    )
    args = parser.parse_args()

    import gradio as gr

    from demo import build_demo
    from handseg.inference import default_threads

    # Each of the concurrent requests runs its own team of torch threads: share the cores among them.
    threads = args.threads or default_threads(concurrent=CONCURRENCY_LIMIT)
    print(f"handseg app: {CONCURRENCY_LIMIT} segmentations at a time, {threads} CPU thread(s) each", flush=True)
    demo = build_demo(model=args.model, threads=threads)
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=64)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=MAX_FILE_SIZE,
        show_error=True,
        theme=theme,
        ssr_mode=False,
    )


if __name__ == "__main__":
    main()

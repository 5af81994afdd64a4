"""Launch the handseg web app: `python app.py [--model DIR] [--host H] [--port P] [--share]`."""

from __future__ import annotations

import argparse
import os
import socket
import sys

# Offline by design: no usage analytics, no version check. Set before gradio is imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# Upload limit and how many segmentations run at once (each holds an image and its masks in memory).
MAX_FILE_SIZE = "50mb"
CONCURRENCY_LIMIT = 2


def port_taken(host: str, port: int) -> bool:
    """Whether another program already listens on host:port (checked before the slow start-up)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def fail(message: str) -> None:
    """A start-up problem the user can fix: one line naming the flag, exit status 2."""
    print(f"handseg app: error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    import handseg

    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description="handseg web app")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link (needs internet)")
    parser.add_argument(
        "--backend",
        choices=handseg.BACKENDS,
        default="auto",
        help="how the network runs, as in handseg segment --backend (default auto: int8 on a CPU where the "
        "model has its int8 file)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help=f"CPU threads per segmentation (default: the cores shared by the {CONCURRENCY_LIMIT} segmentations "
        "that run at once, half of them for torch, at least 1: fast when other programs are busy too)",
    )
    args = parser.parse_args()
    if port_taken(args.host, args.port):
        fail(
            f"port {args.port} on {args.host} is already in use (is the app running already?); choose another "
            "with --port N"
        )

    import gradio as gr

    from demo import build_demo, load_segmenters

    # Each of the concurrent requests runs its own team of threads: the Segmenters share the cores among them.
    try:
        segmenters, notices = load_segmenters(
            args.model, threads=args.threads, concurrent=CONCURRENCY_LIMIT, backend=args.backend
        )
    except (handseg.NoDefaultModelError, ImportError, OSError, ValueError) as exc:  # no such model, no such device
        fail(f"--model: {exc}" if args.model else f"cannot load the shipped model: {exc}")
    for notice in notices:
        print(f"handseg app: note: {notice}", flush=True)
    if segmenters:
        main_model = next(iter(segmenters.values()))
        print(f"handseg app: {CONCURRENCY_LIMIT} segmentations at a time; {main_model.describe()}", flush=True)
    demo = build_demo(segmenters)
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=64)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    try:
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            max_file_size=MAX_FILE_SIZE,
            show_error=True,
            theme=theme,
            ssr_mode=False,
        )
    except OSError as exc:  # the port was taken while the models loaded
        fail(f"cannot serve on {args.host}:{args.port} ({exc.strerror or 'port in use'}); choose another with --port N")


if __name__ == "__main__":
    main()

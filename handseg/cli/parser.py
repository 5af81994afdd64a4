"""The `handseg` parser: each command's own flags here, the shared ones from `handseg.cli.options`."""

from __future__ import annotations

import argparse
from pathlib import Path

import handseg
from handseg.cli.flags import model_flag
from handseg.cli.options import run_flags, segmenter_flags
from handseg.cli.ray import cmd_ray
from handseg.cli.segment import cmd_segment
from handseg.cli.tools import cmd_convert, cmd_export, cmd_models
from handseg.packaging import INT8_FILE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handseg", description="Hand segmentation: binary hand masks for photos.")
    parser.add_argument("--version", action="version", version=f"handseg {handseg.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    segmenting = [segmenter_flags(), run_flags()]

    seg = sub.add_parser(
        "segment",
        parents=[segmenter_flags(hand_files=True), run_flags()],
        help="write hand masks for images (and videos)",
        description="Write a hand mask (0/255 PNG) for each input image, or a mask video for each video. A bad "
        "file is reported and the rest go on; the exit status is 1 if any input failed.",
    )
    _inputs_and_outputs(seg, "image files, folders or globs; videos (.mp4, .mov, ...) give a mask or overlay video")
    seg.add_argument("--overlay", action="store_true", help="also save <stem>_overlay.png (videos: an overlay video)")
    seg.add_argument("--viz", action="store_true", help="also save <stem>_viz.png: image | mask | overlay")
    seg.add_argument("--batch-size", type=int, help="images per forward pass (default: 8 on a GPU, 1 on a CPU)")
    seg.set_defaults(func=cmd_segment, videos_only=False)

    video = sub.add_parser(
        "video",
        parents=segmenting,
        help="write a mask (or overlay) video for each video",
        description="Write a video of masks (white hands on black), or of overlays, at the source's frame rate; "
        'frames are streamed, never all in memory (needs PyAV: pip install "handseg[video]").',
    )
    _inputs_and_outputs(video, "video files, folders or globs")
    video.add_argument("--overlay", action="store_true", help="write the video with the hands tinted instead")
    video.add_argument("--batch-size", type=int, help="frames per forward pass (default: 8 on a GPU, 1 on a CPU)")
    video.set_defaults(func=cmd_segment, videos_only=True, viz=False)

    ray = sub.add_parser(
        "ray",
        parents=segmenting,
        help="segment folders of photos with Ray Data, on this machine or a cluster",
        description="Masks for folders of photos, on Ray Data: each actor holds one model; planned, named and "
        "resumed as handseg segment does; unreadable photos listed in <output>/handseg_failures.csv. "
        "Also: python -m handseg.ray ...",
    )
    ray.add_argument("-i", "--input", nargs="+", required=True, metavar="IN", help="image files, folders or globs")
    ray.add_argument("-o", "--output", required=True, type=Path, help="folder for the masks")
    ray.add_argument("--actors", type=int, default=1, help="Ray actors, each with its own model (default 1)")
    ray.add_argument("--batch-size", type=int, default=8, help="photos per batch handed to an actor (default 8)")
    ray.add_argument("--gpus-per-actor", type=float, default=0, help="GPUs each actor asks Ray for")
    ray.add_argument("--address", help="an existing Ray cluster (auto, or ray://host:port); default: start one")
    ray.add_argument("-v", "--verbose", action="store_true", help="show Ray's own log lines (default: kept out)")
    ray.set_defaults(func=cmd_ray)

    models = sub.add_parser(
        "models",
        help="list the models shipped with handseg",
        description="List the models shipped inside the handseg package, usable by name with --model, "
        "handseg.load_model(NAME) and HandUNet.from_pretrained(NAME).",
    )
    models.set_defaults(func=cmd_models)

    export = sub.add_parser(
        "export",
        parents=[model_flag()],
        help="export a model to ONNX (dynamic height and width), in float32 or int8",
        description="Export a model to ONNX for onnxruntime or other runtimes. Input: float32 "
        "(N, 3, H, W) RGB in [0, 1], any H and W; output: logits (N, 1, H, W). With --int8, a statically "
        f"quantized model for `--backend int8`: write it as {INT8_FILE} in the model's folder.",
    )
    export.add_argument("--onnx", required=True, type=Path, help="file to write")
    export.add_argument(
        "--int8",
        action="store_true",
        help="quantize: int8 weights (per channel) and uint8 activations, ranges measured on --calibration",
    )
    export.add_argument(
        "--calibration",
        nargs="+",
        metavar="PHOTOS",
        help="photos like the ones to segment, with and without hands: files, folders or globs",
    )
    export.add_argument("--overwrite", action="store_true", help="replace the --onnx file if it exists")
    export.set_defaults(func=cmd_export)

    convert = sub.add_parser(
        "convert",
        help="convert an original Hand-Segmentation MODEL.pth into a hub folder",
        description="Convert an original Hand-Segmentation checkpoint (torch 0.3 or newer) into a hub folder "
        "(config.json, model.safetensors, README.md) loadable with HandUNet.from_pretrained. "
        "The checkpoint is read with weights_only=True: no code in it is executed.",
    )
    convert.add_argument("checkpoint", help="the original MODEL.pth")
    convert.add_argument("out_dir", help="folder to write")
    convert.add_argument("--overwrite", action="store_true", help="replace a model already in out_dir")
    convert.set_defaults(func=cmd_convert)
    return parser


def _inputs_and_outputs(command: argparse.ArgumentParser, inputs: str) -> None:
    command.add_argument("-i", "--input", nargs="+", required=True, metavar="IN", help=inputs)
    command.add_argument(
        "-o",
        "--output",
        nargs="+",
        metavar="OUT",
        help="one folder for all outputs, or one path per input (default: <stem>_mask.png or <stem>_mask.mp4 "
        "beside each input)",
    )

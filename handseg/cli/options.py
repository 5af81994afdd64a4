"""The flags every segmenting command shares, defined once, and the Segmenter they describe."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from handseg.backends import AUTO, BACKENDS
from handseg.cli.flags import model_flag
from handseg.image import MAX_PIXELS
from handseg.packaging import FastPathNotice
from handseg.processing import DEFAULT_MAX_SIDE, DEFAULT_THRESHOLD, checked_scale, checked_threshold
from handseg.segmenter import Segmenter, SegmenterOptions, checked_batch_size


def segmenter_flags(*, hand_files: bool = False) -> argparse.ArgumentParser:
    """How the model runs (`handseg.Segmenter`) and what it is asked (threshold, CRF); with `hand_files`,
    `--hands` (each hand's files) beside `--no-hands`."""
    flags = argparse.ArgumentParser(add_help=False, parents=[model_flag()])
    group = flags.add_argument_group("how the model runs")
    group.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"hand probability threshold (default {DEFAULT_THRESHOLD})",
    )
    group.add_argument("--crf", action="store_true", help="refine with a dense CRF (needs pydensecrf2)")
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    size = group.add_mutually_exclusive_group()
    size.add_argument("--scale", type=float, help="run the network at this scale (the original used 0.5)")
    size.add_argument(
        "--max-side",
        type=int,
        help="cap the longer side the network sees; 0: full resolution (default: the resolution the model "
        f"was trained at, from its config; {DEFAULT_MAX_SIDE} if it has none); masks are always full size",
    )
    group.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default: every core for onnxruntime, the int8 default and the landmark models, half "
        "of them for torch, at least 1, which holds up when other programs are busy; OMP_NUM_THREADS, when set, "
        "is used instead)",
    )
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default=AUTO,
        help="auto (default): on a CPU, int8 where the model has its int8 file (the shipped default does), "
        "else bf16 on a CPU with bf16 arithmetic, else torch; on CUDA, torch. torch: PyTorch in float32 "
        "(bf16 autocast on CUDA); bf16: PyTorch under bf16 autocast; onnx: onnxruntime in float32; int8: "
        "onnxruntime with the model's model_int8.onnx (handseg export --int8 makes one). A --model ending in "
        ".onnx always uses onnxruntime",
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model: a one-off compilation per frame size (seconds), then faster "
        "frames; pays for videos and long runs of same-sized images (needs a C++ compiler)",
    )
    # One setting, `hands`: None (landmarks found where the model reads them), False (--no-hands) or, where
    # the command writes files, True (--hands: each hand's files too); argparse refuses both flags at once.
    hands = group.add_mutually_exclusive_group()
    hands.add_argument(
        "--no-hands",
        dest="hands",
        action="store_false",
        default=None,
        help="skip the hand landmark stage: the network's mask alone, faster, unconfirmed (as --no-verify); "
        "a model that reads landmarks then reads none",
    )
    if hand_files:
        hands.add_argument(
            "--hands",
            dest="hands",
            action="store_true",
            default=None,
            help="also save <stem>_hands.png (0 background, 1..N: each hand's pixels) and <stem>_hands.json (per "
            "hand: left or right, score, landmarks, pixels)",
        )
    group.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="keep the network's mask as it is: by default each region of it is kept only where a hand is "
        "found or the landmark model confirms one (dropping faces, flowers and forearms)",
    )
    group.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        help="refuse larger images, a guard against decompression bombs (default: 100 MP); raise it for bigger photos",
    )
    return flags


def run_flags() -> argparse.ArgumentParser:
    """Inputs, outputs and what to do with outputs that exist: for every command that writes files."""
    flags = argparse.ArgumentParser(add_help=False)
    existing = flags.add_mutually_exclusive_group()
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose output already exists, to continue an interrupted run",
    )
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that exist already (without this or --skip-existing, a run that would "
        "overwrite a file stops before any work); inputs are never overwritten",
    )
    flags.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="search folders' sub-folders too; outputs in an -o folder keep the sub-folder tree",
    )
    flags.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    return flags


def segmenter_options(args: argparse.Namespace) -> SegmenterOptions:
    """The Segmenter keywords the flags give (`max_side`: "auto" unless --max-side or --scale says)."""
    if args.scale is not None:
        max_side = None
    elif args.max_side is None:
        max_side = AUTO
    else:
        max_side = args.max_side or None  # --max-side 0: full resolution
    return SegmenterOptions(
        device=args.device,
        backend=args.backend,
        threads=args.threads,
        compile=args.compile,
        max_side=max_side,
        scale=args.scale,
        max_pixels=args.max_pixels,
        hands=args.hands is not False,
        verify=args.verify,
    )


def check_segmenter_flags(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags before anything loads (None: nothing)."""
    from handseg.crf import INSTALL_HINT, crf_available

    if args.crf and not crf_available():
        return INSTALL_HINT
    if args.max_pixels < 1:
        return f"--max-pixels must be at least 1, got {args.max_pixels}"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be at least 1, got {args.threads}"
    checks = [
        ("--threshold", lambda: checked_threshold(args.threshold)),
        ("--scale", lambda: checked_scale(args.scale)),
        ("--batch-size", lambda: checked_batch_size(getattr(args, "batch_size", None))),
    ]
    if args.max_side is not None and args.max_side < 0:
        return f"--max-side must be 0 (full resolution) or a side of at least 1 pixel, got {args.max_side}"
    for flag, check in checks:
        try:
            check()
        except ValueError as exc:
            return f"{flag}: {exc}"
    return None


def build_segmenter(args: argparse.Namespace, **extra) -> Segmenter:
    """The Segmenter the flags describe; "auto"'s fallback, if any, is in its `notice` (said once by the
    caller, as a line of its own, not as a Python warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FastPathNotice)
        return Segmenter(args.model, **segmenter_options(args), **extra)


def say(message: str, args: argparse.Namespace, prog: str = "handseg") -> None:
    """A line on stderr, unless -q."""
    if not getattr(args, "quiet", False):
        print(f"{prog}: {message}", file=sys.stderr)


def error(message: str, prog: str = "handseg") -> int:
    """A usage, device or model error: one line, exit status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def names(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")

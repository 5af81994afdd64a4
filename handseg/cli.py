"""The `handseg` command line: `handseg segment ...`, `handseg models`, `handseg convert ...`, `handseg export ...`."""

from __future__ import annotations

import argparse
import glob
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import handseg
from handseg.convert import CheckpointError, convert_checkpoint
from handseg.crf import INSTALL_HINT, CRFUnavailableError, crf_available
from handseg.image import (
    IMAGE_FILE_SUFFIXES,
    MAX_PIXELS,
    ImageLoadError,
    lossy_suffix_problem,
    save_image,
    written_by_handseg,
)
from handseg.inference import (
    AUTO,
    BACKENDS,
    DEFAULT_MAX_SIDE,
    DeviceUnavailableError,
    Segmentation,
    iter_segment,
    load_model,
)
from handseg.onnx_backend import export_onnx
from handseg.pretrained import DEFAULT_MODEL, NoDefaultModelError, available_models, model_summary
from handseg.quantize import INT8_FILE, quantize_int8
from handseg.video import VIDEO_SUFFIXES, VideoError, segment_video
from handseg.visualize import mask_to_image, overlay, side_by_side


class UsageError(ValueError):
    """The command line asks for something impossible (exit status 2)."""


#: What handseg appends to an input's stem when it names an output (`photo_mask.png`, `photo_viz.png`).
OUTPUT_TAGS = ("_mask", "_overlay", "_viz")


def expand_inputs(patterns: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """(inputs, skipped). Files as given; folders -> their image and video files; globs -> their matches.
    Order kept, no repeats. What handseg itself wrote is skipped when a folder or glob is expanded (never
    a file named on its own): a `<stem>_mask.png` (or `_overlay`, `_viz`) beside a `<stem>.*` source, or
    a PNG marked as written by handseg, so that a second run does not segment the first run's masks."""
    entries: list[tuple[Path, bool]] = []  # (path, found by expanding a folder or glob)
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            known = IMAGE_FILE_SUFFIXES | VIDEO_SUFFIXES
            entries += [(p, True) for p in sorted(path.iterdir()) if p.suffix.lower() in known and p.is_file()]
        elif any(ch in pattern for ch in "*?[") and not path.exists():
            entries += [(Path(p), True) for p in sorted(glob.glob(pattern, recursive=True)) if Path(p).is_file()]
        else:
            entries.append((path, False))  # a missing file is reported by name when it is read
    stems = {(p.parent, p.stem) for p, _ in entries}
    named = {p for p, expanded in entries if not expanded}
    skipped = {p for p, expanded in entries if expanded and p not in named and _is_own_output(p, stems)}
    inputs = [p for p, _ in entries if p not in skipped]
    return list(dict.fromkeys(inputs)), sorted(skipped)


def _is_own_output(path: Path, stems: set[tuple[Path, str]]) -> bool:
    tag = next((t for t in OUTPUT_TAGS if path.stem.endswith(t)), None)
    if tag is None:
        return False
    return (path.parent, path.stem[: -len(tag)]) in stems or written_by_handseg(path)


def output_paths(inputs: list[Path], outputs: Sequence[str] | None, overlay_video: bool = False) -> list[Path]:
    """Where each input's result goes: beside it, in one output folder, or at the paths given.
    Default names: `<stem>_mask.png` for images, `<stem>_mask.mp4` (or `_overlay.mp4`) for videos."""

    def default_name(p: Path) -> str:
        if p.suffix.lower() in VIDEO_SUFFIXES:
            return f"{p.stem}_overlay.mp4" if overlay_video else f"{p.stem}_mask.mp4"
        return f"{p.stem}_mask.png"

    if not outputs:
        return [p.with_name(default_name(p)) for p in inputs]
    # One -o that is a folder, ends in a slash, serves several inputs or has no file extension: a folder
    # (created when missing), so `-o masks` works like `-o masks/`.
    single = outputs[0]
    if len(outputs) == 1 and (
        Path(single).is_dir() or single.endswith(("/", "\\")) or len(inputs) > 1 or not Path(single).suffix
    ):
        return [Path(single) / default_name(p) for p in inputs]
    if len(outputs) != len(inputs):
        raise UsageError(f"{len(inputs)} inputs but {len(outputs)} outputs; give one -o per input or one folder")
    for source, target in zip(inputs, outputs):
        is_video = source.suffix.lower() in VIDEO_SUFFIXES
        known = VIDEO_SUFFIXES if is_video else IMAGE_FILE_SUFFIXES
        if Path(target).suffix.lower() not in known:
            kind, example = ("a video", ".mp4") if is_video else ("an image", ".png")
            raise UsageError(
                f"-o {target}: {Path(target).suffix!r} is not {kind} file extension; use e.g. {example}, "
                "or give a folder"
            )
        if not is_video and (problem := lossy_suffix_problem(target)):
            raise UsageError(f"-o {target}: {problem}; use .png (or .webp, .tif, .bmp: written losslessly)")
    return [Path(o) for o in outputs]


def _sibling(mask_path: Path, kind: str) -> Path:
    stem = mask_path.stem.removesuffix("_mask")
    return mask_path.with_name(f"{stem}_{kind}.png")


def _save(result: Segmentation, mask_path: Path, want_overlay: bool, want_viz: bool) -> None:
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    save_image(mask_to_image(result.mask), mask_path)
    if want_overlay or want_viz:
        tinted = overlay(result.image, result.mask)
        if want_overlay:
            save_image(tinted, _sibling(mask_path, "overlay"))
        if want_viz:
            save_image(side_by_side(result.image, mask_to_image(result.mask), tinted), _sibling(mask_path, "viz"))


def _say_skipped(skipped: list[Path], why: str, quiet: bool) -> None:
    if skipped and not quiet:
        examples = ", ".join(p.name for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        print(f"handseg: skipped {len(skipped)} file(s) {why}: {examples}", file=sys.stderr)


def cmd_segment(args: argparse.Namespace) -> int:
    inputs, own_outputs = expand_inputs(args.input)
    _say_skipped(own_outputs, "that handseg wrote (name them on their own to segment them)", args.quiet)
    if not inputs:
        print("handseg: error: no input images found", file=sys.stderr)
        return 1
    try:
        outputs = output_paths(inputs, args.output, overlay_video=args.overlay)
    except UsageError as exc:
        print(f"handseg: error: {exc}", file=sys.stderr)
        return 2
    if args.skip_existing:
        done = [p for p, o in zip(inputs, outputs) if o.exists()]
        _say_skipped(done, "whose output already exists (--skip-existing)", args.quiet)
        todo = [(p, o) for p, o in zip(inputs, outputs) if not o.exists()]
        inputs, outputs = [p for p, _ in todo], [o for _, o in todo]
        if not inputs:
            return 0
    if args.crf and not crf_available():
        print(f"handseg: error: {INSTALL_HINT}", file=sys.stderr)
        return 2
    if args.max_pixels < 1:
        print(f"handseg: error: --max-pixels must be at least 1, got {args.max_pixels}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model, args.device, backend=args.backend, compile=args.compile, threads=args.threads)
    except DeviceUnavailableError as exc:
        print(f"handseg: error: --device: {exc}", file=sys.stderr)
        return 2
    except (NoDefaultModelError, OSError, ValueError, ImportError) as exc:
        print(f"handseg: error: cannot load model: {exc}", file=sys.stderr)
        return 2
    if args.scale is not None:
        max_side = None
    elif args.max_side is None:
        max_side = AUTO
    else:
        max_side = args.max_side or None  # 0: full resolution
    options = {
        "threshold": args.threshold,
        "crf": args.crf,
        "scale": args.scale,
        "max_side": max_side,
        "max_pixels": args.max_pixels,
    }
    is_video = [p.suffix.lower() in VIDEO_SUFFIXES for p in inputs]
    failed = sum(_segment_video(p, o, model, args, **options) for p, o, v in zip(inputs, outputs, is_video) if v)
    images = [(p, o) for p, o, v in zip(inputs, outputs, is_video) if not v]
    failed += _segment_images(images, model, args, **options)
    if failed:
        print(f"handseg: {failed} of {len(inputs)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def _segment_images(jobs: list[tuple[Path, Path]], model, args: argparse.Namespace, **options) -> int:
    """Segment images in batches, saving each result; returns how many failed (each reported)."""
    failed = 0
    progress = None
    if len(jobs) > 1 and not args.quiet:
        from tqdm import tqdm

        progress = tqdm(total=len(jobs), unit="img", file=sys.stderr)
    for index, result in iter_segment([p for p, _ in jobs], model, batch_size=args.batch_size, **options):
        source, target = jobs[index]
        try:
            if isinstance(result, ImageLoadError):
                raise result
            _save(result, target, args.overlay, args.viz)
            if not args.quiet and progress is None:
                print(f"{source} -> {target} ({100 * result.hand_fraction:.1f}% hand)")
        except (ImageLoadError, OSError, CRFUnavailableError) as exc:
            failed += 1
            message = str(exc) if str(source) in str(exc) else f"{source}: {exc}"
            (progress.write if progress else print)(f"handseg: failed: {message}", file=sys.stderr)
        if progress:
            progress.update()
    if progress:
        progress.close()
    return failed


def _segment_video(source: Path, target: Path, model, args: argparse.Namespace, **options) -> int:
    """Segment one video; 1 if it failed (reported), else 0."""
    try:
        stats = segment_video(
            source,
            target,
            model,
            as_overlay=args.overlay,
            batch_size=args.batch_size,
            progress=not args.quiet,
            **options,
        )
    except VideoError as exc:
        print(f"handseg: failed: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"{source} -> {target} ({stats.frames} frames, {stats.fps:.1f} frames/s)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the models shipped in the package, the default first, each with its card's one-line summary."""
    names = sorted(available_models(), key=lambda n: n != DEFAULT_MODEL)
    if not names:
        print("no models are shipped in this handseg build")
        return 0
    width = max(len(n) for n in names)
    for name in names:
        mark = "*" if name == DEFAULT_MODEL else " "
        print(f"{mark} {name:<{width}}  {model_summary(name)}")
    print("(* the default; use another with --model NAME, or handseg.load_model(NAME))")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.calibration and not args.int8:
        print("handseg: error: --calibration applies to --int8 only", file=sys.stderr)
        return 2
    photos: list[Path] = []
    if args.int8:
        if not args.calibration:
            print(
                "handseg: error: --int8 needs --calibration PHOTOS: photos like the ones you will segment, "
                "with and without hands (a folder, a glob or files; a few dozen are enough)",
                file=sys.stderr,
            )
            return 2
        photos, _ = expand_inputs(args.calibration)
        photos = [p for p in photos if p.suffix.lower() in IMAGE_FILE_SUFFIXES]
        if not photos:
            print(f"handseg: error: --calibration: no image files in {' '.join(args.calibration)}", file=sys.stderr)
            return 2
    try:
        model = load_model(args.model, "cpu", backend="torch")
        path = quantize_int8(model, args.onnx, photos) if args.int8 else export_onnx(model, args.onnx)
    except (NoDefaultModelError, OSError, ValueError, ImportError) as exc:
        print(f"handseg: error: {exc}", file=sys.stderr)
        return 2
    kind = f"int8, calibrated on {len(photos)} photos" if args.int8 else "float32"
    print(f"exported {args.model or 'the default model'} -> {path} ({kind})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    try:
        model = convert_checkpoint(args.checkpoint, args.out_dir)
    except CheckpointError as exc:
        print(f"handseg: error: {exc}", file=sys.stderr)
        return 2
    params = sum(p.numel() for p in model.parameters())
    print(f"converted {args.checkpoint} -> {args.out_dir} ({params / 1e6:.2f} M parameters)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handseg", description="Hand segmentation: binary hand masks for photos.")
    parser.add_argument("--version", action="version", version=f"handseg {handseg.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser(
        "segment",
        help="write hand masks for images",
        description="Write a hand mask (0/255 PNG) for each input image. A bad file is reported and the rest go on; "
        "the exit status is 1 if any image failed.",
    )
    seg.add_argument(
        "-i",
        "--input",
        nargs="+",
        required=True,
        metavar="IN",
        help="image files, folders or globs; videos (.mp4, .mov, ...) give a mask or overlay video",
    )
    seg.add_argument(
        "-o",
        "--output",
        nargs="+",
        metavar="OUT",
        help="one folder for all masks, or one path per input (default: <stem>_mask.png beside each input)",
    )
    seg.add_argument(
        "--model", default=None, help="hub folder, repo id or shipped model name (default: the shipped default model)"
    )
    seg.add_argument("--threshold", type=float, default=0.5, help="hand probability threshold (default 0.5)")
    seg.add_argument("--crf", action="store_true", help="refine with a dense CRF (needs pydensecrf2)")
    seg.add_argument("--overlay", action="store_true", help="also save <stem>_overlay.png")
    seg.add_argument("--viz", action="store_true", help="also save <stem>_viz.png: image | mask | overlay")
    seg.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    size = seg.add_mutually_exclusive_group()
    size.add_argument("--scale", type=float, help="run the network at this scale (the original used 0.5)")
    size.add_argument(
        "--max-side",
        type=int,
        help="cap the longer side the network sees; 0: full resolution (default: the resolution the model "
        f"was trained at, from its config; {DEFAULT_MAX_SIDE} if it has none); masks are always full size",
    )
    seg.add_argument("--batch-size", type=int, help="images per forward pass (default: 8 on a GPU, 1 on a CPU)")
    seg.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default: half the cores, at least 1, which holds up when other programs are busy; "
        "OMP_NUM_THREADS, when set, is used instead)",
    )
    seg.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto (default): on a CPU, int8 where the model has its int8 file (the shipped default does), "
        "else bf16 on a CPU with bf16 arithmetic, else torch; on CUDA, torch. torch: PyTorch in float32 "
        "(bf16 autocast on CUDA); bf16: PyTorch under bf16 autocast; onnx: onnxruntime in float32; int8: "
        "onnxruntime with the model's model_int8.onnx (handseg export --int8 makes one). A --model ending in "
        ".onnx always uses onnxruntime",
    )
    seg.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model: a one-off compilation per frame size (seconds), then faster "
        "frames; pays for videos and long runs of same-sized images (needs a C++ compiler)",
    )
    seg.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose mask (or mask video) already exists, to continue an interrupted run",
    )
    seg.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        help="refuse larger images, a guard against decompression bombs (default: 100 MP); raise it for bigger photos",
    )
    seg.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    seg.set_defaults(func=cmd_segment)

    mod = sub.add_parser(
        "models",
        help="list the models shipped with handseg",
        description="List the models shipped inside the handseg package, usable by name with --model, "
        "handseg.load_model(NAME) and HandUNet.from_pretrained(NAME).",
    )
    mod.set_defaults(func=cmd_models)

    exp = sub.add_parser(
        "export",
        help="export a model to ONNX (dynamic height and width), in float32 or int8",
        description="Export a model to ONNX for onnxruntime or other runtimes. Input: float32 "
        "(N, 3, H, W) RGB in [0, 1], any H and W; output: logits (N, 1, H, W). With --int8, a statically "
        f"quantized model for `--backend int8`: write it as {INT8_FILE} in the model's folder.",
    )
    exp.add_argument("--onnx", required=True, type=Path, help="file to write")
    exp.add_argument(
        "--int8",
        action="store_true",
        help="quantize: int8 weights (per channel) and uint8 activations, ranges measured on --calibration",
    )
    exp.add_argument(
        "--calibration",
        nargs="+",
        metavar="PHOTOS",
        help="photos like the ones to segment, with and without hands: files, folders or globs",
    )
    exp.add_argument(
        "--model", default=None, help="hub folder, repo id or shipped model name (default: the shipped default model)"
    )
    exp.set_defaults(func=cmd_export)

    conv = sub.add_parser(
        "convert",
        help="convert an original Hand-Segmentation MODEL.pth into a hub folder",
        description="Convert an original Hand-Segmentation checkpoint (torch 0.3 or newer) into a hub folder "
        "(config.json, model.safetensors, README.md) loadable with HandUNet.from_pretrained. "
        "The checkpoint is read with weights_only=True: no code in it is executed.",
    )
    conv.add_argument("checkpoint", help="the original MODEL.pth")
    conv.add_argument("out_dir", help="folder to write")
    conv.set_defaults(func=cmd_convert)
    return parser


_show_warning = warnings.showwarning


def _show_notice(message, category, filename, lineno, file=None, line=None) -> None:
    """handseg's own notices in one line, not a source listing; other warnings as Python shows them."""
    if issubclass(category, handseg.FastPathNotice):
        print(f"handseg: note: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, filename, lineno, file, line)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_notice
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""The `handseg` command line: `handseg segment ...`, `handseg models`, `handseg convert ...`, `handseg export ...`."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import handseg
from handseg import pretrained
from handseg.backends import INT8_FILE
from handseg.convert import CheckpointError, convert_checkpoint
from handseg.crf import INSTALL_HINT, CRFUnavailableError, crf_available
from handseg.export import export_onnx, quantize_int8
from handseg.hardware import DeviceUnavailableError
from handseg.image import DEFAULT_MAX_SIDE, IMAGE_FILE_SUFFIXES, MAX_PIXELS, ImageLoadError, save_image
from handseg.jobs import RunPlan, Tally, UsageError, expand_inputs, is_video, plan_run, sibling
from handseg.pretrained import NoDefaultModelError, available_models, model_summary
from handseg.segmenter import AUTO, BACKENDS, FastPathNotice, Segmentation, Segmenter, load_model
from handseg.video import VideoError, segment_video
from handseg.visualize import mask_to_image, overlay, side_by_side


def _save(result: Segmentation, mask_path: Path, want_overlay: bool, want_viz: bool) -> None:
    save_image(mask_to_image(result.mask), mask_path)
    if want_overlay or want_viz:
        tinted = overlay(result.image, result.mask)
        if want_overlay:
            save_image(tinted, sibling(mask_path, "overlay"))
        if want_viz:
            save_image(side_by_side(result.image, mask_to_image(result.mask), tinted), sibling(mask_path, "viz"))


def _names(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")


def _say(message: str, args: argparse.Namespace) -> None:
    if not args.quiet:
        print(f"handseg: {message}", file=sys.stderr)


def _error(message: str) -> int:
    print(f"handseg: error: {message}", file=sys.stderr)
    return 2


def plan_segment_run(args: argparse.Namespace) -> RunPlan:
    """The run the flags describe (`handseg.jobs.plan_run`), saying what it left out or renamed."""
    extra = [kind for kind, wanted in (("overlay", args.overlay), ("viz", args.viz)) if wanted]
    plan = plan_run(
        args.input,
        args.output,
        skip_existing=args.skip_existing,
        overwrite=args.overwrite,
        overlay_video=args.overlay,
        also_writes=lambda source, target: () if is_video(source) else [sibling(target, k) for k in extra],
    )
    if plan.own_outputs:
        _say(f"skipped {len(plan.own_outputs)} file(s) that handseg wrote (name them on their own to segment them): "
             f"{_names([Path(p.name) for p in plan.own_outputs])}", args)  # fmt: skip
    if plan.renamed:
        _say(f"{len(plan.renamed)} inputs would share an output name with another input (e.g. {plan.renamed[0]}); "
             "theirs are named <stem>_<extension>_mask.png, numbered where that is not enough", args)  # fmt: skip
    if plan.skipped:
        _say(f"skipped {len(plan.skipped)} file(s) whose output already exists (--skip-existing): "
             f"{_names([Path(p.name) for p in plan.skipped])}", args)  # fmt: skip
    return plan


def cmd_segment(args: argparse.Namespace) -> int:
    if args.crf and not crf_available():
        return _error(INSTALL_HINT)
    if args.max_pixels < 1:
        return _error(f"--max-pixels must be at least 1, got {args.max_pixels}")
    try:
        plan = plan_segment_run(args)
    except UsageError as exc:
        return _error(str(exc))
    jobs, skipped = plan.jobs, len(plan.skipped)
    tally = Tally(skipped=skipped, folders={o.parent for _, o in jobs})
    if not jobs:
        _say(f"nothing to do: all {skipped} output(s) exist already (--skip-existing)", args)
        return 0
    try:
        segmenter = build_segmenter(args)
    except DeviceUnavailableError as exc:
        return _error(f"--device: {exc}")
    except (NoDefaultModelError, OSError, ValueError, ImportError) as exc:
        return _error(f"cannot load model: {exc}")
    if segmenter.notice:
        _say(f"note: {segmenter.notice}", args)
    _say(segmenter.describe(), args)
    options = {"threshold": args.threshold, "crf": args.crf}
    try:
        for source, target in (job for job in jobs if is_video(job[0])):
            _segment_video(source, target, segmenter, args, tally, **options)
        _segment_images([job for job in jobs if not is_video(job[0])], segmenter, args, tally, **options)
    except KeyboardInterrupt:
        print(
            f"handseg: interrupted: {tally.written} of {len(jobs)} written, each complete (nothing partial is "
            "left); run the same command with --skip-existing to continue where it stopped",
            file=sys.stderr,
        )
        return 130
    if tally.failed or (len(jobs) + skipped > 1 and not args.quiet):  # -q: only errors
        print(f"handseg: {tally.line()}", file=sys.stderr)
    return 1 if tally.failed else 0


def build_segmenter(args: argparse.Namespace) -> Segmenter:
    """The Segmenter the flags describe; "auto"'s fallback, if any, is in its `notice` (printed once by
    the caller, not as a Python warning)."""
    if args.scale is not None:
        max_side = None
    elif args.max_side is None:
        max_side = AUTO
    else:
        max_side = args.max_side or None  # --max-side 0: full resolution
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FastPathNotice)
        return Segmenter(
            args.model,
            device=args.device,
            backend=args.backend,
            threads=args.threads,
            compile=args.compile,
            max_side=max_side,
            scale=args.scale,
        )


def _segment_images(
    jobs: list[tuple[Path, Path]], segmenter: Segmenter, args: argparse.Namespace, tally: Tally, **options
) -> None:
    """Segment images in batches, saving each result; a file that fails is reported and counted."""
    progress = None
    if len(jobs) > 1 and not args.quiet:
        from tqdm import tqdm

        progress = tqdm(total=len(jobs), unit="img", file=sys.stderr)
    results = segmenter.iter_segment(
        [p for p, _ in jobs], batch_size=args.batch_size, max_pixels=args.max_pixels, **options
    )
    try:
        for index, result in results:
            source, target = jobs[index]
            try:
                if isinstance(result, ImageLoadError):
                    raise result
                _save(result, target, args.overlay, args.viz)
                tally.written += 1
                if not args.quiet and progress is None:
                    print(f"{source} -> {target} ({100 * result.hand_fraction:.1f}% hand)")
            except (ImageLoadError, OSError, CRFUnavailableError) as exc:
                tally.failed += 1
                message = str(exc) if str(source) in str(exc) else f"{source}: {exc}"
                (progress.write if progress else print)(f"handseg: failed: {message}", file=sys.stderr)
            if progress:
                progress.update()
    finally:
        if progress:
            progress.close()


def _segment_video(
    source: Path, target: Path, segmenter: Segmenter, args: argparse.Namespace, tally: Tally, **options
) -> None:
    """Segment one video; a failure is reported and counted."""
    try:
        stats = segment_video(
            source,
            target,
            segmenter,
            as_overlay=args.overlay,
            batch_size=args.batch_size,
            progress=not args.quiet,
            **options,
        )
    except (VideoError, OSError) as exc:
        tally.failed += 1
        print(f"handseg: failed: {exc}", file=sys.stderr)
        return
    tally.written += 1
    if not args.quiet:
        print(f"{source} -> {target} ({stats.frames} frames, {stats.fps:.1f} frames/s)")


def cmd_models(args: argparse.Namespace) -> int:
    """List the models shipped in the package, the default first, each with its card's one-line summary."""
    names = sorted(available_models(), key=lambda n: n != pretrained.DEFAULT_MODEL)
    if not names:
        print("no models are shipped in this handseg build")
        return 0
    width = max(len(n) for n in names)
    for name in names:
        mark = "*" if name == pretrained.DEFAULT_MODEL else " "
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
        model = load_model(args.model, "cpu")
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
    existing = seg.add_mutually_exclusive_group()
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose mask (or mask video) already exists, to continue an interrupted run",
    )
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that exist already (without this or --skip-existing, a run that would "
        "overwrite a file stops before any work); inputs are never overwritten",
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # before any file was written (a run's own handler says more)
        print("\nhandseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

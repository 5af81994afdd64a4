"""`handseg models`, `handseg export` and `handseg convert`: the models themselves."""

from __future__ import annotations

import argparse
from pathlib import Path

from handseg import pretrained
from handseg.cli.options import error
from handseg.convert import CheckpointError, convert_checkpoint
from handseg.export import export_onnx, quantize_int8
from handseg.image import IMAGE_FILE_SUFFIXES, OutputExistsError, exists_message, refuse_overwriting
from handseg.jobs import UsageError, expand_inputs
from handseg.pretrained import NoDefaultModelError, available_models, model_summary
from handseg.segmenter import load_model


def cmd_models(args: argparse.Namespace) -> int:
    """List the models shipped in the package, the default first, each with its card's one-line summary."""
    names = available_models()  # the default first, then the newest first
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
        return error("--calibration applies to --int8 only")
    if args.onnx.suffix.lower() != ".onnx":
        return error(f"--onnx {args.onnx}: an ONNX file's name ends in .onnx")
    try:
        refuse_overwriting([args.onnx], overwrite=args.overwrite, choice="--overwrite replaces it")
    except FileExistsError as exc:
        return error(str(exc))
    photos: list[Path] = []
    if args.int8:
        if not args.calibration:
            return error(
                "--int8 needs --calibration PHOTOS: photos like the ones you will segment, with and without "
                "hands (a folder, a glob or files; a few dozen are enough)"
            )
        try:
            photos = expand_inputs(args.calibration).files
        except UsageError as exc:
            return error(f"--calibration: {exc}")
        photos = [p for p in photos if p.suffix.lower() in IMAGE_FILE_SUFFIXES]
        if not photos:
            return error(f"--calibration: no image files in {' '.join(args.calibration)}")
    try:
        model = load_model(args.model, "cpu")
        path = quantize_int8(model, args.onnx, photos) if args.int8 else export_onnx(model, args.onnx)
    except (NoDefaultModelError, OSError, ValueError, ImportError) as exc:
        return error(str(exc))
    kind = f"int8, calibrated on {len(photos)} photos" if args.int8 else "float32"
    print(f"exported {args.model or 'the default model'} -> {path} ({kind})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    try:
        model = convert_checkpoint(args.checkpoint, args.out_dir, overwrite=args.overwrite)
    except CheckpointError as exc:
        return error(str(exc))
    except OutputExistsError as exc:
        return error(exists_message(exc.path, "--overwrite replaces it"))
    params = sum(p.numel() for p in model.parameters())
    print(f"converted {args.checkpoint} -> {args.out_dir} ({params / 1e6:.2f} M parameters)")
    return 0

"""Make a model's int8 file (`model_int8.onnx`) from train-split photos (train.run does it for its best/).

    python -m train.quantize [--model handunet_lite0.hands_v4] [--data ../shared/data] [--per-source 6]
                             [--out FOLDER/model_int8.onnx]

Calibration takes `--per-source` train photos from each source, hands and hand-free alike
(egohands, hgr, handphotos, indoor, negatives, hand_free_scenes), chosen with a fixed seed, so
the same model, data and onnxruntime give the same file; the val and test splits are never read.
`--out` defaults to the model's own folder, where `backend="int8"` finds it.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import datasets

import handseg
from handseg.hub import resolve_model_source
from handseg.pretrained import pretrained_path
from handseg.quantize import INT8_FILE, quantize_int8
from train.data import DataError, image_input, load_split

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Sources with hands and without: activation ranges must cover both.
CALIBRATION_SOURCES = ("egohands", "hgr", "handphotos", "indoor", "negatives", "hand_free_scenes")


def calibration_photos(data: str | Path, per_source: int, seed: int = 0) -> list[bytes | str]:
    """`per_source` train photos from each of CALIBRATION_SOURCES, in a fixed order."""
    train = load_split(data, sources=list(CALIBRATION_SOURCES)).train
    missing = set(CALIBRATION_SOURCES) - set(train["source"])
    if missing:
        raise DataError(f"{data}: no train photos from {', '.join(sorted(missing))}")
    return choose_photos(train, per_source, seed)


def choose_photos(train: datasets.Dataset, per_source: int, seed: int = 0) -> list[bytes | str]:
    """`per_source` photos from each source of `train` (CALIBRATION_SOURCES' order first), chosen with
    `seed` among the source's photos sorted by id, so the choice does not depend on the dataset's order."""
    by_source: dict[str, list[int]] = {}
    for index, source in enumerate(train["source"]):
        by_source.setdefault(source, []).append(index)
    order = [s for s in CALIBRATION_SOURCES if s in by_source] + sorted(set(by_source) - set(CALIBRATION_SOURCES))
    ids = train["id"]
    chosen = []
    for source in order:
        indices = sorted(by_source[source], key=lambda i: ids[i])
        chosen += random.Random(seed).sample(indices, min(per_source, len(indices)))
    return [image_input(train[i]["image"]) for i in chosen]


def write_int8(folder: Path, train: datasets.Dataset, per_source: int = 6) -> Path:
    """Quantize the model saved in `folder` into its `model_int8.onnx`, calibrated on `train` photos;
    written to a temporary name first, so a stopped run never leaves half a file there."""
    model = handseg.HandUNet.from_pretrained(folder).eval()
    partial = folder / f".{INT8_FILE}.partial"
    try:
        quantize_int8(model, partial, choose_photos(train, per_source))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return partial.replace(folder / INT8_FILE)


def int8_agreement(folder: Path, val: datasets.Dataset, photos: int = 20) -> float | None:
    """Mean share of pixels where the int8 and float masks of the model in `folder` agree, on up to
    `photos` val photos spread over the split (None without val photos)."""
    if len(val) == 0:
        return None
    step = max(1, len(val) // photos)
    shares = []
    for i in range(0, len(val), step):
        image = image_input(val[i]["image"])
        int8 = handseg.segment(image, folder, backend="int8").mask
        shares.append(float((int8 == handseg.segment(image, folder, backend="torch").mask).mean()))
    return sum(shares) / len(shares)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="hub folder or shipped model name (default: the default model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of sources with splits.csv")
    parser.add_argument("--per-source", type=int, default=6, help="calibration photos per source (default 6)")
    parser.add_argument("--out", type=Path, help=f"file to write (default: the model folder's {INT8_FILE})")
    args = parser.parse_args(argv)
    folder = pretrained_path() if args.model is None else Path(resolve_model_source(args.model))
    if args.out is None and not folder.is_dir():
        parser.error(f"--model {args.model}: not a local folder; give --out")
    out = args.out or folder / INT8_FILE
    try:
        photos = calibration_photos(args.data, args.per_source)
    except (DataError, OSError) as exc:
        print(f"train.quantize: error: {exc}", file=sys.stderr)
        return 2
    model = handseg.HandUNet.from_pretrained(str(folder) if folder.is_dir() else args.model).eval()
    quantize_int8(model, out, photos)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), calibrated on {len(photos)} train photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())

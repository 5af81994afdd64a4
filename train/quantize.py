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
import numpy as np
from scipy import ndimage

import handseg
from train import DEFAULT_DATA
from train.data import DataError, image_input, load_pair, load_split, mask_is_empty

#: Sources with hands and without: activation ranges must cover both.
CALIBRATION_SOURCES = ("egohands", "hgr", "handphotos", "indoor", "negatives", "hand_free_scenes")


def calibration_photos(data: str | Path, per_source: int, seed: int = 0) -> list[bytes | str]:
    """`per_source` train photos from each of CALIBRATION_SOURCES, in a fixed order."""
    train = load_split(data, sources=list(CALIBRATION_SOURCES)).train
    missing = set(CALIBRATION_SOURCES) - set(train["source"])
    if missing:
        raise DataError(f"{data}: no train photos from {', '.join(sorted(missing))}")
    return choose_photos(train, per_source, seed)


def choose_photos(train: datasets.Dataset, per_source: int, seed: int = 0) -> list[bytes | str | np.ndarray]:
    """`per_source` photos from each source of `train` (CALIBRATION_SOURCES' order first), chosen with
    `seed` among the source's photos sorted by id, so the choice does not depend on the dataset's order.

    Activation ranges must cover hand-free scenes too: when `train` holds no hand-free photo (a user's
    own folder of hands), the hand-free parts of the chosen photos are added, cut from them
    (`hand_free_crops`)."""
    by_source: dict[str, list[int]] = {}
    for index, source in enumerate(train["source"]):
        by_source.setdefault(source, []).append(index)
    order = [s for s in CALIBRATION_SOURCES if s in by_source] + sorted(set(by_source) - set(CALIBRATION_SOURCES))
    ids = train["id"]
    chosen = []
    for source in order:
        indices = sorted(by_source[source], key=lambda i: ids[i])
        chosen += random.Random(seed).sample(indices, min(per_source, len(indices)))
    photos = [image_input(train[i]["image"]) for i in chosen]
    if not any(mask_is_empty(train[i]) for i in range(len(train))):
        photos += hand_free_crops([train[i] for i in chosen])
    return photos


def hand_free_crops(examples: list[dict]) -> list[np.ndarray]:
    """For each photo with hands, its largest half or quarter (top, bottom, left, right; the four corners)
    that holds no hand pixel, nor any within 2% of the longer side of one: a real hand-free view of its
    scene. Photos where every such window touches a hand give none."""
    crops = []
    for example in examples:
        rgb, mask = load_pair(example)
        h, w = mask.shape
        near_hand = ndimage.binary_dilation(mask, iterations=max(1, round(0.02 * max(h, w))))
        top, bottom, left, right = slice(0, h // 2), slice(h - h // 2, h), slice(0, w // 2), slice(w - w // 2, w)
        halves = [(top, slice(0, w)), (bottom, slice(0, w)), (slice(0, h), left), (slice(0, h), right)]
        quarters = [(rows, cols) for rows in (top, bottom) for cols in (left, right)]
        free = [box for box in halves + quarters if not near_hand[box].any()]
        if free and min(h, w) >= 128:
            crops.append(np.ascontiguousarray(rgb[free[0]]))
    return crops


def write_int8(folder: Path, train: datasets.Dataset, per_source: int = 6) -> Path:
    """Quantize the model saved in `folder` into its `model_int8.onnx`, calibrated on `train` photos
    (written whole or not at all, as `handseg.quantize_int8` writes every file)."""
    model = handseg.HandUNet.from_pretrained(folder).eval()
    return handseg.quantize_int8(model, folder / handseg.INT8_FILE, choose_photos(train, per_source))


def int8_agreement(folder: Path, val: datasets.Dataset, photos: int = 20) -> float | None:
    """Mean share of pixels where the int8 and float masks of the model in `folder` agree, on up to
    `photos` val photos spread over the split (None without val photos)."""
    if len(val) == 0:
        return None
    step = max(1, len(val) // photos)
    int8_segmenter = handseg.Segmenter(folder, backend="int8")
    float_segmenter = handseg.Segmenter(folder, backend="torch")
    shares = []
    for i in range(0, len(val), step):
        image = image_input(val[i]["image"])
        int8 = int8_segmenter(image).mask
        shares.append(float((int8 == float_segmenter(image).mask).mean()))
    return sum(shares) / len(shares)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of sources with splits.csv")
    parser.add_argument("--per-source", type=int, default=6, help="calibration photos per source (default 6)")
    parser.add_argument("--out", type=Path, help=f"file to write (default: the model folder's {handseg.INT8_FILE})")
    args = parser.parse_args(argv)
    folder = handseg.pretrained_path() if args.model is None else Path(handseg.resolve_model_source(args.model))
    if args.out is None and not folder.is_dir():
        parser.error(f"--model {args.model}: not a local folder; give --out")
    out = args.out or folder / handseg.INT8_FILE
    try:
        photos = calibration_photos(args.data, args.per_source)
    except (DataError, OSError) as exc:
        print(f"train.quantize: error: {exc}", file=sys.stderr)
        return 2
    model = handseg.HandUNet.from_pretrained(str(folder) if folder.is_dir() else args.model).eval()
    handseg.quantize_int8(model, out, photos)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), calibrated on {len(photos)} train photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())

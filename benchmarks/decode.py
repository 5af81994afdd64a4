"""How much the reduced JPEG decode changes masks: `handseg.segment(path)` (JPEG decoded at a reduced
DCT scale, then resized) against `handseg.segment(load_image(path))` (decoded in full, then resized).

    python benchmarks/decode.py [--model NAME] [--data ../shared/data]

The app and the command line both pass the file, so they agree exactly (tests/test_app.py); this is
the difference a caller sees who passes an already decoded array instead. Rows: every val JPEG with
hands, and EgoHands/HGR photos resized to 1918x1280 (the original project's frame size), each the
share of mask pixels that differ, mean and max over images.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import handseg
from benchmarks.speed import make_frames
from train import DEFAULT_DATA
from train.data import load_split


def differing_share(segmenter: handseg.Segmenter, path: str) -> float:
    from_file = segmenter(path).mask
    from_array = segmenter(handseg.load_image(path)).mask
    return float((from_file != from_array).mean())


def main() -> None:
    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    model = handseg.Segmenter(args.model, device="cpu")

    val = load_split(args.data, sources=["egohands", "hgr", "handphotos", "indoor"]).val
    paths = [row["image"]["path"] or "" for row in val]
    jpegs = [p for p in paths if p.lower().endswith((".jpg", ".jpeg"))]
    frames = make_frames(args.data, Path(tempfile.mkdtemp(prefix="handseg-decode-")), {"1918x1280": (1918, 1280)})
    print(f"model {model.name} ({model.backend}); share of mask pixels that differ, file vs decoded array")
    print()
    print("| images | n | mean | max |")
    print("|---|---:|---:|---:|")
    for name, paths in (("val JPEGs (photos with hands)", jpegs), ("1918x1280 frames", frames["1918x1280"])):
        shares = [differing_share(model, p) for p in paths]
        print(f"| {name} | {len(shares)} | {100 * np.mean(shares):.2f}% | {100 * max(shares):.2f}% |")


if __name__ == "__main__":
    main()

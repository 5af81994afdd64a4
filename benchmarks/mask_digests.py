"""A digest of every mask handseg makes on a split's photos, per backend, to show that a change of code
changes no output: run it before and after, then compare.

    python benchmarks/mask_digests.py --out before.json [--split val] [--backends torch,bf16,onnx,int8]
    python benchmarks/mask_digests.py --compare before.json after.json

Per photo and backend: the mask's SHA-256; for the default backend also each hand's label image and the
landmarks the landmark stage found (rounded to 1e-3 px). `--compare` prints what differs and exits 1 if
anything does.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import handseg
from train import DEFAULT_DATA


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def split_photos(data: Path, split: str) -> list[Path]:
    """The split's photos with hands and hand-free photos alike, in splits.csv's order."""
    photos = []
    with open(data / "splits.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == split:
                found = sorted((data / row["source"] / "images").glob(f"{row['id']}.*"))
                photos += found[:1]
    return photos


def digests(data: Path, split: str, backends: list[str]) -> dict[str, dict[str, str]]:
    photos = split_photos(data, split)
    table: dict[str, dict[str, str]] = {}
    for backend in backends:
        segmenter = handseg.Segmenter(backend=backend)
        for photo in photos:
            result = segmenter(photo)
            key = str(photo.relative_to(data))
            row = table.setdefault(key, {})
            row[backend] = digest(np.packbits(result.mask))
            if backend == backends[0]:
                row["hand_labels"] = digest(result.hand_labels)
                row["landmarks"] = digest(np.round([h.landmarks for h in result.detected or []], 3))
        print(f"{backend}: {len(photos)} photos", file=sys.stderr)
    return table


def compare(before: dict, after: dict) -> int:
    differ = [
        (photo, what)
        for photo in sorted(set(before) | set(after))
        for what in sorted(set(before.get(photo, {})) | set(after.get(photo, {})))
        if before.get(photo, {}).get(what) != after.get(photo, {}).get(what)
    ]
    for photo, what in differ:
        print(f"differs: {photo} {what}")
    kinds = sorted({what for row in before.values() for what in row})
    print(f"{len(before)} photos x {', '.join(kinds)}: {len(differ)} differ")
    return 1 if differ else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="val")
    parser.add_argument("--backends", default="int8,torch,bf16,onnx", help="the first also digests the hands")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        sys.exit(compare(before, after))
    table = digests(args.data, args.split, args.backends.split(","))
    text = json.dumps(table, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()

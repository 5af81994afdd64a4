"""A gallery of predictions on the unlabelled GTEA kitchen frames (the original project's kind of
scene, absent from training): every other frame, overlay in magenta, as one JPEG.

    python benchmarks/gallery.py --out gallery.jpg [--model DIR] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import handseg
from handseg.visualize import overlay

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="hub folder or repo id (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--every", type=int, default=2, help="use every N-th frame")
    parser.add_argument("--columns", type=int, default=3)
    parser.add_argument("--tile-width", type=int, default=320)
    args = parser.parse_args()

    frames = sorted((args.data / "gtea_unlabeled").glob("*.jpg"))[:: args.every]
    model = handseg.load_model(args.model, "cpu")
    tiles = []
    for result in handseg.segment_batch(frames, model):
        tile = overlay(result.image, result.mask, opacity=0.55)
        h, w = tile.shape[:2]
        tiles.append(np.array(Image.fromarray(tile).resize((args.tile_width, round(h * args.tile_width / w)))))
    height = max(t.shape[0] for t in tiles)
    rows = []
    for i in range(0, len(tiles), args.columns):
        row = [
            np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0)), constant_values=255)
            for t in tiles[i : i + args.columns]
        ]
        row += [np.full((height, args.tile_width + 4, 3), 255, np.uint8)] * (args.columns - len(row))
        rows.append(np.pad(np.concatenate(row, axis=1), ((0, 4), (0, 0), (0, 0)), constant_values=255))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows)).save(args.out, quality=80)
    print(f"{len(tiles)} frames -> {args.out}")


if __name__ == "__main__":
    main()

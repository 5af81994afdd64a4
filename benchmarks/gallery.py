"""Galleries of predictions, for looking rather than scoring: overlay in magenta, as one JPEG.

    python benchmarks/gallery.py --set gtea --out gtea_gallery.jpg [--model DIR] [--backend auto]
                                 [--data ../shared/data] [--hands] [--no-verify]

--hands draws each hand in its own colour with its skeleton and L or R (`Segmentation.plot`; with
--no-verify, yellow: marked but near no hand found) instead of the magenta overlay. The masks are the
default's (hands confirmed); --no-verify shows the network's mask as it is.

Sets (all from ../shared/data, none trained on):
  gtea              every other unlabelled GTEA kitchen frame (the original project's kind of scene)
  faces             hand-free val photos: faces and portraits (nothing should be marked)
  faces_with_hands  fingers on chins and cheeks, phones and microphones held near faces
  test              the held-out egocentric test split (luthaihoc_ego), hand-only labels in green outline
  hand_free_scenes  the hand-free test split: photos from sources training never sees (nothing should be marked)
  gestures_held_out the two people tools.pseudo_labels holds out (tongam, viany), every third frame
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

import handseg
from tools.pseudo_labels import HELD_OUT_PEOPLE
from train import DEFAULT_DATA

SETS = ("gtea", "faces", "faces_with_hands", "test", "hand_free_scenes", "gestures_held_out")


def _split_ids(data: Path, source: str, split: str) -> list[str]:
    with open(data / "splits.csv", newline="") as f:
        return [r["id"] for r in csv.DictReader(f) if r["source"] == source and r["split"] == split]


def images_of(name: str, data: Path) -> list[Path]:
    if name == "gtea":
        return sorted((data / "gtea_unlabeled").glob("*.jpg"))[::2]
    if name == "faces":
        ids = _split_ids(data, "negatives", "val")
        # Faces and portraits (rooms are not the hard case), in a fixed spread over the val split.
        ids = [i for i in ids if not i.startswith("densedepth_")][::4]
        return [next((data / "negatives" / "images").glob(f"{i}.*")) for i in ids]
    if name == "faces_with_hands":
        return sorted((data / "faces_with_hands" / "images").iterdir())
    if name == "test":
        return [
            next((data / "luthaihoc_ego" / "images").glob(f"{i}.*")) for i in _split_ids(data, "luthaihoc_ego", "test")
        ][::2]
    if name == "hand_free_scenes":
        ids = _split_ids(data, "hand_free_scenes", "test")
        return [next((data / "hand_free_scenes" / "images").glob(f"{i}.*")) for i in ids]
    if name == "gestures_held_out":
        frames = sorted((data / "gestures_unlabeled" / "images").iterdir())
        return [p for p in frames if p.stem.startswith(HELD_OUT_PEOPLE)][::3]
    raise ValueError(f"unknown set {name!r}; choose one of {', '.join(SETS)}")


def _outline(tile: np.ndarray, truth: np.ndarray) -> np.ndarray:
    edge = np.zeros_like(truth)
    edge[1:] |= truth[1:] != truth[:-1]
    edge[:, 1:] |= truth[:, 1:] != truth[:, :-1]
    tile = tile.copy()
    tile[edge] = (40, 220, 40)
    return tile


def _fit(tile: np.ndarray, side: int) -> np.ndarray:
    """The tile scaled to fit a side x side square, centred on white."""
    h, w = tile.shape[:2]
    factor = side / max(h, w)
    small = np.array(Image.fromarray(tile).resize((max(1, round(w * factor)), max(1, round(h * factor)))))
    out = np.full((side, side, 3), 255, np.uint8)
    y0, x0 = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out


def main() -> None:
    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backend", choices=handseg.BACKENDS, default="auto", help="auto (default): what users get")
    parser.add_argument("--set", choices=SETS, default="gtea")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--tile-width", type=int, default=240, help="side of each square tile")
    parser.add_argument("--hands", action="store_true", help="each hand in its own colour, with its skeleton")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="the raw mask (verify=False)")
    args = parser.parse_args()

    paths = images_of(args.set, args.data)
    segmenter = handseg.Segmenter(args.model, device="cpu", backend=args.backend, verify=args.verify)
    tiles = []
    for path, (_, result) in zip(paths, segmenter.iter_segment(paths)):
        tile = result.plot(opacity=0.55) if args.hands else result.overlay(opacity=0.55)
        if args.set == "test":
            tile = _outline(tile, handseg.load_mask(args.data / "luthaihoc_ego" / "masks" / f"{path.stem}.png"))
        tiles.append(_fit(tile, args.tile_width))
    side = args.tile_width
    rows = []
    for i in range(0, len(tiles), args.columns):
        row = [np.pad(t, ((0, 4), (0, 4), (0, 0)), constant_values=255) for t in tiles[i : i + args.columns]]
        row += [np.full((side + 4, side + 4, 3), 255, np.uint8)] * (args.columns - len(row))
        rows.append(np.concatenate(row, axis=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows)).save(args.out, quality=80)
    print(f"{len(tiles)} images -> {args.out}")


if __name__ == "__main__":
    main()

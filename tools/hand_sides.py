"""Which hand is which, from the labels two public repositories publish beside the photos in
`../shared/data`: writes `benchmarks/hand_sides.csv` (source, id, side, owner, polygon), what
`benchmarks/handedness.py` scores left and right against. No photo is copied: only each labelled hand's
side and outline.

- EgoHands (`egohands`, all three videos): each video's `polygons.mat` (Rainnie-oo7/Praktikum_2_Monate,
  `10Hand-Tracking-PytorchEgoHandsdidntworkCloned/RCNN_(egos_hand_dataset)/data/<video>/polygons.mat`)
  holds per annotated frame, in frame order, the polygons myleft, myright, yourleft, yourright ("my": the
  camera wearer's, "your": the player opposite). Frame i of a video is its i-th id in `../shared/data`
  (sorted), checked here: the polygons filled give the shared mask exactly.
- `luthaihoc_ego` (LuThaiHoc/hand-segmentation, `bad_case_demo/mask/{left,right}/<id>.png`): the
  repository's own left- and right-hand masks of nine of the 20 test frames (at 1.5x the shared photos'
  size); each stored as its convex hull, in the shared photo's pixels.

    python -m tools.hand_sides --egohands DIR_WITH_<video>.mat --luthaihoc DIR_WITH_left_AND_right \
        --data ../shared/data --out benchmarks/hand_sides.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

EGOHANDS_HANDS = {"myleft": ("left", "wearer"), "myright": ("right", "wearer"),
                  "yourleft": ("left", "other"), "yourright": ("right", "other")}  # fmt: skip
MAX_VERTICES = 32  #: an outline is kept to this many corners: enough to tell two hands apart


def coarse(points: np.ndarray) -> np.ndarray:
    """At most MAX_VERTICES of an outline's corners, evenly spaced, in whole pixels."""
    step = max(1, int(np.ceil(len(points) / MAX_VERTICES)))
    return np.rint(points[::step]).astype(int)


def hull(mask: np.ndarray) -> np.ndarray:
    """The convex hull of a mask's pixels, as polygon corners (x, y)."""
    from scipy.spatial import ConvexHull

    y, x = np.nonzero(mask)
    points = np.stack([x, y], axis=1)
    return points[ConvexHull(points).vertices]


def filled(polygons: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    canvas = Image.new("L", size)
    draw = ImageDraw.Draw(canvas)
    for points in polygons:
        draw.polygon([tuple(p) for p in points], fill=255)
    return np.asarray(canvas) > 0


def egohands_rows(folder: Path, data: Path) -> list[dict]:
    from scipy.io import loadmat

    rows = []
    for mat in sorted(folder.glob("*.mat")):
        video = mat.stem
        frames = loadmat(mat)["polygons"][0]
        ids = sorted(p.stem for p in (data / "egohands" / "images").glob(f"{video}_frame_*.jpg"))
        if len(ids) != len(frames):
            raise SystemExit(f"{mat}: {len(frames)} frames of polygons, {len(ids)} photos in {data / 'egohands'}")
        for frame, image_id in zip(frames, ids):
            polygons = {name: np.asarray(frame[name]) for name in EGOHANDS_HANDS}
            polygons = {name: points for name, points in polygons.items() if len(points) >= 3}
            truth = np.asarray(Image.open(data / "egohands" / "masks" / f"{image_id}.png")) > 0
            if not np.array_equal(filled(list(polygons.values()), truth.shape[::-1]), truth):
                raise SystemExit(f"{image_id}: the polygons do not fill to the shared mask (frames out of order?)")
            for name, points in polygons.items():
                side, owner = EGOHANDS_HANDS[name]
                rows.append({"source": "egohands", "id": image_id, "side": side, "owner": owner,
                             "polygon": " ".join(f"{x},{y}" for x, y in coarse(points))})  # fmt: skip
    return rows


def luthaihoc_rows(folder: Path, data: Path) -> list[dict]:
    rows = []
    for side in ("left", "right"):
        for path in sorted((folder / side).glob("*.png")):
            label = Image.open(path).convert("L")
            mask = np.asarray(label) > 127
            # The masks are 1920x1440, the shared photos 1280x960: the outline in the photo's pixels.
            photo_width = Image.open(data / "luthaihoc_ego" / "images" / f"{path.stem}.jpg").size[0]
            outline = hull(mask) * (photo_width / label.size[0])
            rows.append({"source": "luthaihoc_ego", "id": path.stem, "side": side, "owner": "wearer",
                         "polygon": " ".join(f"{x},{y}" for x, y in coarse(outline))})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--egohands", type=Path, required=True, help="folder of <video>.mat (EgoHands polygons)")
    parser.add_argument("--luthaihoc", type=Path, required=True, help="folder holding left/ and right/ masks")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/hand_sides.csv"))
    args = parser.parse_args(argv)
    rows = egohands_rows(args.egohands, args.data) + luthaihoc_rows(args.luthaihoc, args.data)
    with args.out.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["source", "id", "side", "owner", "polygon"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{args.out}: {len(rows)} labelled hands")


if __name__ == "__main__":
    main()

"""Left and right against labelled hands: the landmark model's classifier alone, the landmarks' geometry
alone (`handseg.hands.handedness`), and the combination handseg reports.

    python benchmarks/handedness.py [--model NAME_OR_FOLDER] [--data ../shared/data] [--sides benchmarks/hand_sides.csv]

The labels are `benchmarks/hand_sides.csv` (made by `tools/hand_sides.py` from EgoHands' own polygons and
LuThaiHoc/hand-segmentation's left/right masks): each photo is segmented as a user would (the default:
hands confirmed), and each hand is matched to the labelled hand holding most of its 21 landmarks (at least
11; hands matching none are counted apart). Reported per source and owner ("wearer": the camera wearer's
own hands, seen from behind; "other": the player opposite, seen from the front).
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

import handseg
from handseg.hands.handedness import geometric_right
from handseg.hands.labels import inside_polygon
from train import DEFAULT_DATA

SIDES = Path(__file__).with_name("hand_sides.csv")
MIN_LANDMARKS_INSIDE = 11


def labelled_photos(path: Path) -> dict[tuple[str, str], list[tuple[str, str, np.ndarray]]]:
    """(source, id) -> [(side, owner, polygon (N, 2))] from a hand_sides.csv."""
    photos: dict[tuple[str, str], list] = defaultdict(list)
    with path.open() as file:
        for row in csv.DictReader(file):
            polygon = np.array([[float(v) for v in point.split(",")] for point in row["polygon"].split()])
            photos[(row["source"], row["id"])].append((row["side"], row["owner"], polygon))
    return photos


def matched_hands(segmenter: handseg.Segmenter, data: Path, sides: Path) -> tuple[list[dict], int, int]:
    """Each found or confirmed hand that matches a labelled one: its labelled side and owner and its calls;
    and how many labelled hands there were and how many found hands matched none."""
    photos = labelled_photos(sides)
    hands, unmatched = [], 0
    for (source, image_id), labelled in photos.items():
        result = segmenter(data / source / "images" / f"{image_id}.jpg")
        for hand in result.detected or []:  # the hands, as the landmark model read them
            inside = [int(inside_polygon(hand.landmarks[:, :2].astype(np.float64), p).sum()) for *_, p in labelled]
            best = int(np.argmax(inside))
            if inside[best] < MIN_LANDMARKS_INSIDE:
                unmatched += 1
                continue
            side, owner, _ = labelled[best]
            group = source if source != "egohands" else f"egohands {image_id.split('_frame')[0]}"  # by video
            hands.append({
                "source": group, "owner": owner, "truth": side, "combined": hand.handedness,
                "classifier": "right" if hand.classifier_right >= 0.5 else "left",
                "geometry": "right" if geometric_right(hand.landmarks) >= 0.5 else "left",
            })  # fmt: skip
    return hands, sum(len(v) for v in photos.values()), unmatched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a shipped model's name or a hub folder (default: the default)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sides", type=Path, default=SIDES)
    args = parser.parse_args()
    segmenter = handseg.Segmenter(args.model, device="cpu")
    hands, labelled, unmatched = matched_hands(segmenter, args.data, args.sides)
    groups = sorted({(h["source"], h["owner"]) for h in hands})
    print(f"{segmenter.describe()}; {labelled} labelled hands, {len(hands)} found and matched, {unmatched} unmatched")
    print()
    print("| hands | n | classifier alone | geometry alone | combined (reported) |")
    print("|---|---:|---:|---:|---:|")
    rows = [(f"{s} {o}", [h for h in hands if (h["source"], h["owner"]) == (s, o)]) for s, o in groups]
    for name, picked in [*rows, ("all labelled hands", hands)]:
        cells = [f"{np.mean([h[k] == h['truth'] for h in picked]):.1%}" for k in ("classifier", "geometry", "combined")]
        print(f"| {name} | {len(picked)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

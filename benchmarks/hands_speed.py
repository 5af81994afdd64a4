"""How long the hand landmark stage takes on a photo, by how many hands it holds, and where the time goes.

    python benchmarks/hands_speed.py [--data ../shared/data] [--runs 15] [--contended]

The stage as `handseg.segment` runs it: on the working image (longer side 512, already decoded), the palm
detector on its 192x192 letterbox, then the landmark model on each hand's 224x224 crop. Photos: those of
the reference set (`tools/hands_reference.py`) where the pipeline finds 0, 1 and 2 hands; median ms per
photo over --runs runs each, at 1 and 2 onnxruntime threads; idle, or with --contended while another
process keeps one core busy. Then the stages of a two-hand photo.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from pathlib import Path

import numpy as np

from benchmarks.load import busy_core, median_ms
from handseg.hands import HandLandmarker
from handseg.hands.detector import PALM_INPUT_SIZE
from handseg.hands.landmark_model import LANDMARK_INPUT_SIZE
from handseg.hands.warp import crop
from handseg.processing import load_working_image
from tools.hands_reference import WORKING_SIDE, reference_photos
from train import DEFAULT_DATA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--contended", action="store_true", help="with another process keeping one core busy")
    args = parser.parse_args()
    images = [load_working_image(path, max_side=WORKING_SIDE).small for _, path in reference_photos(args.data)]
    probe = HandLandmarker()
    by_count: dict[int, list] = {0: [], 1: [], 2: []}
    for image in images:
        by_count.setdefault(len(probe(image)), []).append(image)
    with busy_core() if args.contended else contextlib.nullcontext():
        print(f"landmark stage, {'one core busy' if args.contended else 'idle'}; median ms per photo (photos)")
        print()
        print("| hands in the photo | 1 thread | 2 threads |")
        print("|---:|---:|---:|")
        landmarkers = {threads: HandLandmarker(threads=threads) for threads in (1, 2)}
        for count in (0, 1, 2):
            photos = by_count[count][:8]
            cells = []
            for landmarker in landmarkers.values():
                per_photo = [median_ms(lambda i=image, run=landmarker: run(i), args.runs) for image in photos]
                cells.append(f"{statistics.median(per_photo):.1f}")
            print(f"| {count} ({len(photos)}) | " + " | ".join(cells) + " |")
        image = by_count[2][0]
        landmarker = landmarkers[1]
        height, width = image.shape[:2]
        side = max(height, width)
        letterbox, _ = crop(image, (width / 2, height / 2), (side, side), 0.0, PALM_INPUT_SIZE, border="zero")
        region = landmarker.palm_regions(image)[0]
        patch, _ = crop(image, region[:2], (region[2], region[2]), region[3], LANDMARK_INPUT_SIZE)
        tensor = patch[None].astype(np.float32) / 255
        crop_side = LANDMARK_INPUT_SIZE
        print()
        print("| stage (a two-hand photo, 1 thread) | median ms |")
        print("|---|---:|")
        palm_session = landmarker.palm_regions.session
        rows = {
            "letterbox to 192x192": lambda: crop(image, (width / 2, height / 2), (side, side), 0.0, PALM_INPUT_SIZE),
            "palm detector": lambda: palm_session.run(None, {"input_1": letterbox[None].astype(np.float32) / 255}),
            "palm detector with decoding and NMS (and letterbox)": lambda: landmarker.palm_regions(image),
            "crop to 224x224, per hand": lambda: crop(image, region[:2], (region[2],) * 2, region[3], crop_side),
            "landmark model, per hand": lambda: landmarker.read_hand.session.run(None, {"input_1": tensor}),
            "whole stage, two hands": lambda: landmarker(image),
        }
        for name, fn in rows.items():
            print(f"| {name} | {median_ms(fn, args.runs):.2f} |")


if __name__ == "__main__":
    main()

"""Find the wrist in the photos whose masks include the forearm, for the hand-only label policy, and
the hands in unlabelled frames, for pseudo-labels (train/pseudo_labels.py).

    pip install mediapipe==0.10.21   # a training-time helper only; never a dependency of handseg
    python train/wrist_landmarks.py --data ../shared/data --sources hgr,indoor --out train/wrist_landmarks.csv
    python train/wrist_landmarks.py --data ../shared/data --sources gestures_unlabeled \
        --out train/gesture_landmarks.csv

MediaPipe Hands (Apache-2.0, its palm and landmark models ship inside the package) gives 21
landmarks per hand; the file has the wrist (0) and the middle finger's knuckle (9), in pixels of
the image as displayed (EXIF-rotated), and all 21 in its `landmarks` column ("x,y" pairs).
`train.labels.LabelPolicy` cuts each mask at the line through the wrist across the hand's axis.
Photos where no hand is found are left out of the file, and the geometric rule of
`train.labels.cut_at_wrist` applies to them.

Standalone on purpose (numpy, Pillow, mediapipe): MediaPipe pins its own numpy, so it can live in
a virtual environment of its own.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import mediapipe as mp
import numpy as np
from PIL import Image, ImageOps

COLUMNS = ["source", "id", "hand", "wrist_x", "wrist_y", "knuckle_x", "knuckle_y", "score", "landmarks"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sources", default="hgr,indoor")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("wrist_landmarks.csv"))
    parser.add_argument("--min-score", type=float, default=0.3, help="MediaPipe's hand detection confidence")
    args = parser.parse_args()
    rows, missed = [], []
    with mp.solutions.hands.Hands(
        static_image_mode=True, max_num_hands=2, min_detection_confidence=args.min_score
    ) as hands:
        for source in args.sources.split(","):
            for path in sorted((args.data / source / "images").iterdir()):
                rgb = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
                h, w = rgb.shape[:2]
                found = hands.process(rgb)
                if not found.multi_hand_landmarks:
                    missed.append(f"{source}/{path.stem}")
                    continue
                for n, (marks, side) in enumerate(zip(found.multi_hand_landmarks, found.multi_handedness)):
                    wrist, knuckle = marks.landmark[0], marks.landmark[9]
                    every = " ".join(f"{m.x * w:.1f},{m.y * h:.1f}" for m in marks.landmark)
                    rows.append(
                        [source, path.stem, n, round(wrist.x * w, 1), round(wrist.y * h, 1),
                         round(knuckle.x * w, 1), round(knuckle.y * h, 1), round(side.classification[0].score, 3),
                         every]
                    )  # fmt: skip
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    print(
        f"{len(rows)} hands in {len({(r[0], r[1]) for r in rows})} photos -> {args.out}; no hand found in {len(missed)}"
    )


if __name__ == "__main__":
    main()

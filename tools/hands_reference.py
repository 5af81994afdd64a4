"""MediaPipe Hands' own answers on shared photos, for holding handseg's landmark pipeline to them.

    # in a virtual environment with mediapipe==0.10.21 (it pins numpy) and handseg installed --no-deps:
    python tools/hands_reference.py --data ../shared/data --out tests/hands_reference.csv

For each photo: the image handseg's landmark stage sees (the working image, `handseg.processing`, enlarged
as `handseg.hands` enlarges small ones), given to `mediapipe.solutions.hands` (static images, model
complexity 0: the palm detector and landmark model handseg ships, at most two hands). One row per hand:
handedness as seen in an ordinary photo (MediaPipe's label assumes a mirrored image, so it is turned
round), its score, and the 21 landmarks in pixels of the working image. Photos without a hand get one
row with hand -1, so "found nothing" is part of the reference too. `tests/test_hands.py` compares.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from handseg.hands.regions import enlarged_for_detection
from handseg.processing import load_working_image

#: (source, how many of its photos, first ones in name order): hands of many kinds, and hand-free photos.
PHOTOS = (
    ("egohands", 12), ("hgr", 12), ("handphotos", 10), ("indoor", 10), ("gestures_unlabeled", 14),
    ("faces_with_hands", 8), ("negatives", 6),
)  # fmt: skip
COLUMNS = ["source", "id", "hand", "handedness", "handedness_score", "landmarks"]
WORKING_SIDE = 512  # the shipped models' working resolution


def reference_photos(data: Path) -> list[tuple[str, Path]]:
    return [(source, path) for source, count in PHOTOS for path in sorted((data / source / "images").iterdir())[:count]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import mediapipe as mp  # here: the photo list is read where mediapipe is not installed (tests)

    rows = []
    solution = mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=0)
    with solution:
        for source, path in reference_photos(args.data):
            working = load_working_image(path, max_side=WORKING_SIDE).small
            image, factor = enlarged_for_detection(working)
            found = solution.process(image)
            if not found.multi_hand_landmarks:
                rows.append([source, path.stem, -1, "", "", ""])
                continue
            h, w = image.shape[:2]
            for n, (marks, side) in enumerate(zip(found.multi_hand_landmarks, found.multi_handedness)):
                label = side.classification[0]
                handedness = "right" if label.label == "Left" else "left"  # MediaPipe assumes a mirrored image
                points = " ".join(
                    f"{m.x * w / factor:.3f},{m.y * h / factor:.3f},{m.z * w / factor:.3f}" for m in marks.landmark
                )
                rows.append([source, path.stem, n, handedness, round(label.score, 4), points])
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    hands = sum(1 for r in rows if r[2] != -1)
    print(f"{hands} hands in {len({(r[0], r[1]) for r in rows if r[2] != -1})} of {len(reference_photos(args.data))} "
          f"photos -> {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()

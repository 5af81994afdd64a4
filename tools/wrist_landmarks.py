"""MediaPipe's hand landmarks and face boxes for photos in ../shared/data: the wrist in photos whose masks
include the forearm (the hand-only label policy), hands in unlabelled frames (pseudo-labels, and the
hands-against-faces measure), faces (where pasted hands go, and whether a hand overlaps one).

    pip install mediapipe==0.10.21   # a training-time helper only; never a dependency of handseg
    python tools/wrist_landmarks.py --data ../shared/data --sources hgr,indoor --hands train/wrist_landmarks.csv
    python tools/wrist_landmarks.py --data ../shared/data --sources gestures_unlabeled \
        --hands train/gesture_landmarks.csv
    python tools/wrist_landmarks.py --data ../shared/data --sources faces_with_hands --upscale-below 640 \
        --hands train/faces_with_hands_landmarks.csv
    python tools/wrist_landmarks.py --data ../shared/data --upscale-below 640 \
        --sources gestures_unlabeled,faces_with_hands,negatives,hand_free_scenes --faces train/face_boxes.csv

MediaPipe Hands (Apache-2.0, its palm and landmark models ship inside the package) gives 21 landmarks
per hand; the hands file has the wrist (0) and the middle finger's knuckle (9), in pixels of the image
as displayed (EXIF-rotated), and all 21 in its `landmarks` column ("x,y" pairs). MediaPipe Face
Detection (full-range model) gives face boxes: the faces file has x, y, width, height as shares of the
photo's width and height (so they hold at any size the photo is stored at).
`--upscale-below` enlarges smaller photos before detection (MediaPipe misses hands in 200 px UTKFace
crops); coordinates are given in the original photo's pixels. Photos where nothing is found are left
out of the files (and counted).

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

HAND_COLUMNS = ["source", "id", "hand", "wrist_x", "wrist_y", "knuckle_x", "knuckle_y", "score", "landmarks"]
FACE_COLUMNS = ["source", "id", "face", "x", "y", "width", "height", "score"]


def photos(data: Path, sources: list[str]):
    for source in sources:
        for path in sorted((data / source / "images").iterdir()):
            yield source, path


def load(path: Path, upscale_below: int) -> tuple[np.ndarray, float]:
    """RGB as displayed, enlarged so its longer side is at least `upscale_below`; and the enlargement."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    factor = max(1.0, upscale_below / max(image.size)) if upscale_below else 1.0
    if factor > 1:
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.BICUBIC)
    return np.asarray(image), factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sources", default="hgr,indoor")
    parser.add_argument("--hands", type=Path, help="write hand landmarks here")
    parser.add_argument("--faces", type=Path, help="write face boxes here")
    parser.add_argument("--min-score", type=float, default=0.3, help="MediaPipe's detection confidence")
    parser.add_argument("--upscale-below", type=int, default=0, help="enlarge photos smaller than this first")
    args = parser.parse_args()
    if not args.hands and not args.faces:
        parser.error("give --hands, --faces or both")
    hand_rows, face_rows, seen, hands_in, faces_in = [], [], 0, set(), set()
    hands = mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2, min_detection_confidence=args.min_score)
    faces = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=args.min_score)
    with hands, faces:
        for source, path in photos(args.data, args.sources.split(",")):
            seen += 1
            rgb, factor = load(path, args.upscale_below)
            h, w = rgb.shape[:2]
            if args.hands and (found := hands.process(rgb)).multi_hand_landmarks:
                hands_in.add((source, path.stem))
                for n, (marks, side) in enumerate(zip(found.multi_hand_landmarks, found.multi_handedness)):
                    points = [(m.x * w / factor, m.y * h / factor) for m in marks.landmark]
                    every = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
                    (wx, wy), (kx, ky) = points[0], points[9]
                    hand_rows.append([source, path.stem, n, round(wx, 1), round(wy, 1), round(kx, 1), round(ky, 1),
                                      round(side.classification[0].score, 3), every])  # fmt: skip
            if args.faces and (found := faces.process(rgb)).detections:
                faces_in.add((source, path.stem))
                for n, detection in enumerate(found.detections):
                    box = detection.location_data.relative_bounding_box  # shares of the width and height
                    shares = [round(v, 4) for v in (box.xmin, box.ymin, box.width, box.height)]
                    face_rows.append([source, path.stem, n, *shares, round(detection.score[0], 3)])
    for out, columns, rows, found_in, kind in (
        (args.hands, HAND_COLUMNS, hand_rows, hands_in, "hands"),
        (args.faces, FACE_COLUMNS, face_rows, faces_in, "faces"),
    ):
        if out:
            with open(out, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(columns)
                writer.writerows(rows)
            print(f"{len(rows)} {kind} in {len(found_in)} of {seen} photos -> {out}")


if __name__ == "__main__":
    main()

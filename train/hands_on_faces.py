"""Hands against faces, measured without masks: how much of each hand MediaPipe found a model's mask covers.

Photos: the two gesture people held out of training (`HELD_OUT_PEOPLE`: the pseudo-labels never include
them) and the `faces_with_hands` photos where MediaPipe found a hand (`train/faces_with_hands_landmarks.csv`,
found on photos enlarged to 640 px, `--upscale-below 640`: it misses the fingers on most 200 px UTKFace
crops). For each hand, the share of its 21 landmarks that fall inside the predicted mask, dilated by 2% of
the photo's longer side (a landmark on the hand's outline still counts); averaged over hands, for all of
them and for those over a face: the landmarks' box intersects the face's box (MediaPipe's face detection,
`train/face_boxes.csv`; where it found no face in a gesture frame, often because a hand covers it, the
person's median face box over their frames; in a UTKFace crop with none, the middle of the crop).

The landmark files are made with `python tools/wrist_landmarks.py` (see its docstring), in MediaPipe's own
virtual environment; this module only reads them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

HERE = Path(__file__).parent
LANDMARK_FILES = (HERE / "gesture_landmarks.csv", HERE / "faces_with_hands_landmarks.csv")
#: Gesture people never written as pseudo-labels (`tools/pseudo_labels.py`): kept out of training to look
#: at and to measure on.
HELD_OUT_PEOPLE = ("tongam", "viany")


def person_of(frame_id: str) -> str:
    """The person a `gestures_unlabeled` frame shows (its id's first part)."""
    return frame_id.split("_")[0]


FACE_BOXES = HERE / "face_boxes.csv"

#: (x, y, width, height) as shares of the photo's width and height.
Box = tuple[float, float, float, float]
#: Where the face is in a tight face crop (UTKFace, GFPGAN, KAIR's real faces) when MediaPipe found none.
CROP_FACE: Box = (0.15, 0.1, 0.7, 0.8)


@dataclass
class FoundHand:
    source: str
    id: str
    points: np.ndarray  #: (21, 2) x, y in the photo's pixels
    face: Box | None  #: the face it may overlap, in shares of the photo (None: no face known)
    size: tuple[int, int]  #: the photo's (width, height)

    @property
    def over_face(self) -> bool:
        if self.face is None:
            return False
        (x0, y0), (x1, y1) = self.points.min(axis=0), self.points.max(axis=0)
        width, height = self.size
        fx, fy, fw, fh = self.face
        fx, fy, fw, fh = fx * width, fy * height, fw * width, fh * height
        return x0 < fx + fw and fx < x1 and y0 < fy + fh and fy < y1


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def face_boxes(path: Path = FACE_BOXES) -> dict[tuple[str, str], Box]:
    """The most confident face of each photo that has one, keyed by (source, id)."""
    best: dict[tuple[str, str], tuple[float, Box]] = {}
    for row in _read(path):
        key, score = (row["source"], row["id"]), float(row["score"])
        box = tuple(float(row[k]) for k in ("x", "y", "width", "height"))
        if key not in best or score > best[key][0]:
            best[key] = (score, box)
    return {key: box for key, (_, box) in best.items()}


def found_hands(data: Path, people: tuple[str, ...] = HELD_OUT_PEOPLE) -> list[FoundHand]:
    """Every hand of the measure, with the face it may overlap."""
    faces = face_boxes()
    by_person: dict[str, list[Box]] = {}
    for (source, photo_id), box in faces.items():
        if source == "gestures_unlabeled":
            by_person.setdefault(person_of(photo_id), []).append(box)
    person_face = {p: tuple(np.median(np.array(boxes), axis=0)) for p, boxes in by_person.items()}
    hands = []
    for path in LANDMARK_FILES:
        for row in _read(path):
            source, photo_id = row["source"], row["id"]
            if source == "gestures_unlabeled" and person_of(photo_id) not in people:
                continue
            points = np.array([[float(v) for v in pair.split(",")] for pair in row["landmarks"].split()])
            face = faces.get((source, photo_id))
            if face is None and source == "gestures_unlabeled":
                face = person_face.get(person_of(photo_id))
            if face is None and photo_id.startswith("utkface_"):
                face = CROP_FACE
            hands.append(FoundHand(source, photo_id, points, face, _size(data / source / "images", photo_id)))
    return hands


def _size(folder: Path, photo_id: str) -> tuple[int, int]:
    path = next(folder.glob(f"{photo_id}.*"))
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).size


def covered_share(hand: FoundHand, mask: np.ndarray) -> float:
    """Share of the hand's landmarks inside `mask` dilated by 2% of its longer side."""
    grown = ndimage.binary_dilation(mask, iterations=max(1, round(0.02 * max(mask.shape))))
    h, w = mask.shape
    xs = np.clip(hand.points[:, 0].round().astype(int), 0, w - 1)
    ys = np.clip(hand.points[:, 1].round().astype(int), 0, h - 1)
    return float(grown[ys, xs].mean())


def landmark_coverage(predict: Callable[[Path], np.ndarray], data: Path) -> dict:
    """{"all": {...}, "over_face": {...}}, each with hands, photos, coverage (mean share of landmarks
    covered per hand) and the hands and photos per source; `predict(path) -> bool mask` is run once per photo."""
    hands = found_hands(data)
    masks: dict[tuple[str, str], np.ndarray] = {}
    shares = []
    for hand in hands:
        key = (hand.source, hand.id)
        if key not in masks:
            masks[key] = predict(next((data / hand.source / "images").glob(f"{hand.id}.*")))
        shares.append(covered_share(hand, masks[key]))

    def summary(chosen: list[int]) -> dict:
        photos = {(hands[i].source, hands[i].id) for i in chosen}
        coverage = float(np.mean([shares[i] for i in chosen])) if chosen else float("nan")
        by_source = {
            source: {
                "hands": sum(hands[i].source == source for i in chosen),
                "photos": sum(s == source for s, _ in photos),
            }
            for source in sorted({s for s, _ in photos})
        }
        return {"hands": len(chosen), "photos": len(photos), "coverage": coverage, "by_source": by_source}

    return {
        "all": summary(list(range(len(hands)))),
        "over_face": summary([i for i, h in enumerate(hands) if h.over_face]),
    }

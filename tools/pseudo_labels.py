"""Pseudo-labels for unlabelled frames of real hands beside faces (../shared/data/gestures_unlabeled).

    python tools/wrist_landmarks.py --data ../shared/data --sources gestures_unlabeled \
        --hands train/gesture_landmarks.csv
    python -m tools.pseudo_labels --data ../shared/data --out cache/gestures_pseudo --gallery cache/gestures_gallery

A training-time teacher, never a runtime dependency of handseg:

1. the current model (default: the shipped one) with flips and three working resolutions averaged,
   refined by the dense CRF;
2. kept only where MediaPipe Hands found a hand (train/gesture_landmarks.csv, made beforehand in
   MediaPipe's own virtual environment): the regions that hold a hand's landmarks are that hand;
   small regions that hold none are left unlabelled;
3. cut at the wrist landmark under the label policy (train.labels: hand, a band behind the wrist
   left unlabelled, forearm background), and a thin band along the hand's outline left unlabelled;
4. a hand whose landmarks mostly fall outside the teacher's mask (the teacher missed it: typically
   a hand against a face, what the current model gets wrong) is labelled from its landmarks alone:
   its palm and finger bones, drawn narrower than a hand, are hand, a margin around them is left
   unlabelled (`--no-skeletons` drops such frames instead);
5. a frame is dropped when the teacher marks a sizeable region where no hand was found.

Frames without a detected hand are never written. People named by `--hold-out` are never written
either: they are kept out of training to look at. Output: `images/` (the frames' own bytes),
`labels/` (0 background, 1 hand, 255 not scored) and `masks/` (0/255, the hand), plus
`pseudo_labels.csv` with what happened to every frame; `--gallery` draws every frame, kept or not.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

import handseg
from handseg.hands import PALM
from train.hands_on_faces import HELD_OUT_PEOPLE, LANDMARK_FILES, person_of
from train.labels import BACKGROUND, HAND, IGNORE, cut_at_landmarks, labels_from_mask

SOURCE = "gestures_unlabeled"
DEFAULT_LANDMARKS = LANDMARK_FILES[0]  # train/gesture_landmarks.csv
#: Working resolutions the teacher averages over (each also mirrored).
TEACHER_SIDES = (384, 512, 640)


def wrist_and_knuckle(hand: np.ndarray) -> tuple[float, float, float, float]:
    """A hand's wrist (0) and middle knuckle (9), from MediaPipe's 21 landmarks ((21, 2) in pixels)."""
    (wx, wy), (kx, ky) = hand[0], hand[9]
    return float(wx), float(wy), float(kx), float(ky)


#: Each finger's chain of joints (MediaPipe's landmarks; the palm's outline is handseg.hands.PALM).
FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))


@dataclass
class PseudoLabel:
    frame_id: str
    kept: bool
    reason: str  #: why it was dropped, or what was kept
    labels: np.ndarray | None = None  #: uint8 (H, W): BACKGROUND, HAND, IGNORE
    from_landmarks: int = 0  #: hands labelled from their skeleton (the teacher missed them)


def read_landmarks(path: str | Path) -> dict[str, list[np.ndarray]]:
    """id -> hands found in that frame (rows of tools/wrist_landmarks.py's file with a `landmarks` column)."""
    hands: dict[str, list[np.ndarray]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            points = np.array([[float(v) for v in pair.split(",")] for pair in row["landmarks"].split()])
            hands.setdefault(row["id"], []).append(points)
    return hands


def teacher_probability(segmenter: handseg.Segmenter, rgb: np.ndarray) -> np.ndarray:
    """The model's hand probability averaged over TEACHER_SIDES, each as is and mirrored."""
    total = np.zeros(rgb.shape[:2], np.float32)
    for side in TEACHER_SIDES:
        at_side = segmenter.with_working_size(max_side=side)
        total += at_side(rgb).probability
        total += at_side(np.ascontiguousarray(rgb[:, ::-1])).probability[:, ::-1]
    return total / (2 * len(TEACHER_SIDES))


def skeleton_masks(shape: tuple[int, int], hand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(core, outline) of a hand drawn from its landmarks: the core (palm polygon, finger bones a tenth
    of the wrist-to-knuckle length wide) lies inside any real hand; the outline (bones three times as
    wide, plus a margin) holds all of it."""
    wx, wy, kx, ky = wrist_and_knuckle(hand)
    scale = max(4.0, float(np.hypot(kx - wx, ky - wy)))
    pictures = []
    for width, margin in ((0.1, 0.0), (0.35, 0.2)):
        picture = Image.new("L", (shape[1], shape[0]), 0)
        draw = ImageDraw.Draw(picture)
        draw.polygon([tuple(hand[i]) for i in PALM], fill=255)
        line_width = max(1, round(width * scale))
        for finger in FINGERS:
            draw.line([tuple(hand[i]) for i in finger], fill=255, width=line_width, joint="curve")
        mask = np.array(picture) > 0
        if margin:
            mask = ndimage.binary_dilation(mask, iterations=max(1, round(margin * scale)))
        pictures.append(mask)
    return pictures[0], pictures[1]


def pseudo_label(
    frame_id: str,
    rgb: np.ndarray,
    hands: list[np.ndarray],
    probability: np.ndarray,
    *,
    min_landmarks_inside: float = 0.8,
    max_unexplained: float = 0.005,
    outline_band: int = 2,
    skeletons: bool = True,
) -> PseudoLabel:
    """Labels for one frame from the teacher's probability and the hands MediaPipe found, or why not."""
    if not hands:
        return PseudoLabel(frame_id, False, "no hand found by MediaPipe")
    refined = handseg.crf.refine_with_crf(rgb, probability)
    regions, _ = ndimage.label(refined > 0.5)
    h, w = regions.shape
    near = ndimage.grey_dilation(regions, size=(7, 7))  # a landmark on the outline still counts
    keep: set[int] = set()
    taught, missed = [], []
    for hand in hands:
        xs = np.clip(hand[:, 0].round().astype(int), 0, w - 1)
        ys = np.clip(hand[:, 1].round().astype(int), 0, h - 1)
        hit = near[ys, xs]
        if (hit > 0).mean() >= min_landmarks_inside:
            keep |= set(hit[hit > 0].tolist())
            taught.append(hand)
        elif skeletons:
            missed.append(hand)
        else:
            return PseudoLabel(frame_id, False, f"only {100 * (hit > 0).mean():.0f}% of a hand's landmarks in the mask")
    mask = np.isin(regions, sorted(keep))
    unexplained = (regions > 0) & ~mask
    if unexplained.mean() > max_unexplained:
        return PseudoLabel(frame_id, False, f"{100 * unexplained.mean():.1f}% marked where no hand was found")
    labels = cut_at_landmarks(mask, [wrist_and_knuckle(hand) for hand in taught]) if taught else labels_from_mask(mask)
    outline = ndimage.binary_dilation(mask, iterations=outline_band) & ~ndimage.binary_erosion(
        mask, iterations=outline_band
    )
    labels[outline] = IGNORE  # the teacher's outline is its least certain part
    # A small region the teacher marks where no hand was found: a hand MediaPipe missed, or not; unscored.
    labels[ndimage.binary_dilation(unexplained, iterations=outline_band)] = IGNORE
    for hand in missed:
        core, around = skeleton_masks((h, w), hand)
        labels[around & (labels == BACKGROUND)] = IGNORE
        labels[core] = HAND
    share = 100 * (labels == HAND).mean()
    reason = f"{len(hands)} hand(s), {len(missed)} from landmarks alone, {share:.1f}% hand"
    return PseudoLabel(frame_id, True, reason, labels, from_landmarks=len(missed))


def write_label(out: Path, image_path: Path, label: PseudoLabel) -> None:
    for folder in ("images", "labels", "masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    (out / "images" / image_path.name).write_bytes(image_path.read_bytes())
    Image.fromarray(label.labels).save(out / "labels" / f"{label.frame_id}.png")
    Image.fromarray(((label.labels == HAND) * 255).astype(np.uint8)).save(out / "masks" / f"{label.frame_id}.png")


def gallery_tile(rgb: np.ndarray, label: PseudoLabel, hands: list[np.ndarray], side: int = 240) -> np.ndarray:
    """The frame with hand green, not-scored grey, landmarks white; a red frame around dropped ones."""
    picture = rgb.astype(np.float32) * 0.75
    if label.labels is not None:
        picture[label.labels == HAND] = picture[label.labels == HAND] * 0.4 + np.array([0, 200, 0]) * 0.6
        picture[label.labels == IGNORE] = picture[label.labels == IGNORE] * 0.5 + 90
    for hand in hands:
        for x, y in hand.round().astype(int):
            picture[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = 255
    tile = np.array(Image.fromarray(picture.clip(0, 255).astype(np.uint8)).resize((side, side * 3 // 4)))
    border = (220, 30, 30) if not label.kept else (250, 170, 0) if label.from_landmarks else None
    if border:  # red: dropped; orange: a hand labelled from its landmarks alone
        tile[:4], tile[-4:], tile[:, :4], tile[:, -4:] = border, border, border, border
    return tile


def save_gallery(tiles: list[tuple[str, np.ndarray]], folder: Path, per_page: int = 48, columns: int = 8) -> None:
    """Pages of tiles, in frame order (names in pseudo_labels.csv, same order)."""
    folder.mkdir(parents=True, exist_ok=True)
    for page, start in enumerate(range(0, len(tiles), per_page)):
        chunk = [t for _, t in tiles[start : start + per_page]]
        while len(chunk) % columns:
            chunk.append(np.full_like(chunk[0], 255))
        rows = [np.concatenate(chunk[i : i + columns], axis=1) for i in range(0, len(chunk), columns)]
        Image.fromarray(np.concatenate(rows, axis=0)).save(folder / f"page_{page + 1:02d}.jpg", quality=85)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        parents=[handseg.model_flag()], prog="python -m tools.pseudo_labels", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder holding gestures_unlabeled/images")
    parser.add_argument("--landmarks", type=Path, default=DEFAULT_LANDMARKS)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hold-out", default=",".join(HELD_OUT_PEOPLE), help="people never written (kept to look at)")
    parser.add_argument("--gallery", type=Path, help="folder for gallery pages of every frame")
    parser.add_argument(
        "--skeletons",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="label a hand the teacher missed from its landmarks (else drop the frame)",
    )
    args = parser.parse_args(argv)
    if not args.landmarks.is_file():
        print(f"error: {args.landmarks} not found: run tools/wrist_landmarks.py first (see --help)", file=sys.stderr)
        return 2
    landmarks = read_landmarks(args.landmarks)
    held_out = set(args.hold_out.split(",")) if args.hold_out else set()
    teacher = handseg.Segmenter(args.model, device="cpu")
    frames = sorted((args.data / SOURCE / "images").iterdir())
    rows, tiles = [], []
    from tqdm import tqdm

    for path in tqdm(frames, unit="frame", file=sys.stderr):
        rgb = handseg.load_image(path)
        hands = landmarks.get(path.stem, [])
        probability = teacher_probability(teacher, rgb) if hands else np.zeros(rgb.shape[:2], np.float32)
        label = pseudo_label(path.stem, rgb, hands, probability, skeletons=args.skeletons)
        person = person_of(path.stem)
        written = label.kept and person not in held_out
        if written:
            write_label(args.out, path, label)
        rows.append([path.stem, person, person in held_out, label.kept, written, label.from_landmarks, label.reason])
        tiles.append((path.stem, gallery_tile(rgb, label, hands)))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "pseudo_labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "person", "held_out", "kept", "written", "hands_from_landmarks", "reason"])
        writer.writerows(rows)
    if args.gallery:
        save_gallery(tiles, args.gallery)
    kept = sum(r[3] for r in rows)
    print(f"{len(rows)} frames: {kept} pseudo-labelled, {sum(r[4] for r in rows)} written to {args.out} "
          f"(held out: {', '.join(sorted(held_out)) or 'none'}), {len(rows) - kept} dropped")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

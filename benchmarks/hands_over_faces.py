"""Hands over faces, with masks: a fixed set of realistic composites of val hands on val faces.

    python benchmarks/hands_over_faces.py [--models A,B] [--data ../shared/data] [--count 40] [--gallery out.jpg]

Each composite is a hand cut from a val photo with hands (egohands, hgr, handphotos: the hand up to the
wrist, `train.labels`) pasted on a val face photo (negatives: UTKFace crops, portraits) by `train.composite`
exactly as training pastes hands on faces (on the cheek, chin, mouth, forehead, temple or hair, sized to the
face, in its skin tone and light, sharpness and grain matched), with a fixed seed: the same set every run,
made of photos no model is trained on. Scored like `train.evaluate`: dice per composite, then the mean
(pixels the label policy leaves unscored, at the wrist, are not scored). Models default to the shipped
default model; `--no-hands` scores them without the landmark stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import handseg
from handseg.metrics import score
from train import DEFAULT_DATA
from train.composite import OnFace, PasteSettings, cutouts_from_photo, paste_hand
from train.data import load_pair, load_split
from train.hands_on_faces import CROP_FACE, face_boxes
from train.labels import HAND, IGNORE, LabelPolicy

FOREARM_SOURCES = ("hgr", "indoor")
FACE_PREFIXES = ("utkface_", "deepface_")


def composites(data: Path, count: int = 40, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB, label map) of `count` val hands pasted over val faces, the same every time."""
    split = load_split(data, sources=["egohands", "hgr", "handphotos", "negatives"])
    val = split.val
    policy = LabelPolicy.hand_only(FOREARM_SOURCES)
    boxes = {photo_id: box for (_, photo_id), box in face_boxes().items()}
    hands, faces = [], []
    for i in range(len(val)):
        example = val[i]
        if str(example["id"]).startswith(FACE_PREFIXES):
            faces.append(i)
        elif example["source"] != "negatives":
            hands.append(i)
    rng = np.random.default_rng(seed)
    settings = PasteSettings(face_overlap_prob=1.0, jpeg_prob=0.0)
    out = []
    while len(out) < count:
        example = val[hands[int(rng.integers(len(hands)))]]
        rgb, mask = load_pair(example)
        labels = policy.labels(mask, example["source"], example["id"])
        cutouts = cutouts_from_photo(rgb, mask, labels)
        if not cutouts:
            continue
        face_example = val[faces[int(rng.integers(len(faces)))]]
        face_rgb, _ = load_pair(face_example)
        face_box = boxes.get(str(face_example["id"]), CROP_FACE)
        background_labels = np.zeros(face_rgb.shape[:2], np.uint8)
        cutout = cutouts[int(rng.integers(len(cutouts)))]
        image, composite_labels, _, _ = paste_hand(
            face_rgb, background_labels, cutout, rng, settings, on_face=OnFace(face_box)
        )
        if (composite_labels == HAND).sum() > 0.01 * composite_labels.size:
            out.append((image, composite_labels))
    return out


def dice(segmenter: handseg.Segmenter, items: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean dice of the segmenter's masks against the composites' labels (IGNORE pixels not scored)."""
    scores = []
    for image, labels in items:
        scored = labels != IGNORE
        scores.append(score(segmenter(image).mask & scored, (labels == HAND) & scored).dice)
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated models (default: the shipped default model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--no-hands", action="store_true", help="without the landmark stage")
    parser.add_argument("--gallery", type=Path, help="also save the composites with each model's masks")
    args = parser.parse_args()
    items = composites(args.data, args.count)
    for model in args.models.split(",") if args.models else [None]:
        segmenter = handseg.Segmenter(model, hands=not args.no_hands)
        print(f"| {model or handseg.pretrained.DEFAULT_MODEL} | {dice(segmenter, items):.3f} |")
        if args.gallery:
            tiles = []
            for image, _ in items[:16]:
                picture = Image.fromarray(segmenter(image).plot())
                picture.thumbnail((256, 256))
                tile = np.zeros((256, 256, 3), np.uint8)
                tile[: picture.height, : picture.width] = np.asarray(picture)
                tiles.append(tile)
            rows = [np.concatenate(tiles[k : k + 4], axis=1) for k in range(0, 16, 4)]
            name = Path(model).name if model else "default"
            Image.fromarray(np.concatenate(rows, axis=0)).save(
                args.gallery.with_name(f"{args.gallery.stem}_{name}.jpg")
            )


if __name__ == "__main__":
    main()

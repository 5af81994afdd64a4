"""Training label maps and the label policy: what counts as "hand".

Training targets are uint8 label maps: BACKGROUND (0), HAND (1) and IGNORE (255,
no loss either way). The shipped model follows the *hand up to the wrist* policy
of EgoHands, the held-out egocentric test split and most public benchmarks. HGR
and indoor label the bare forearm as hand; `LabelPolicy` turns such a mask into
the hand-only policy:

- where MediaPipe found the hand (`train/wrist_landmarks.csv`, made by
  `tools/wrist_landmarks.py`): `cut_at_landmarks` cuts across the hand's axis
  (wrist -> middle knuckle) at the wrist; the mask beyond it is forearm;
- elsewhere `cut_at_wrist`, by geometry alone:

- an arm enters the photo from the frame edge, so the part of a mask component
  that touches the border is the forearm and its far end is the hand;
- the palm is the widest part of the far half: its inscribed circle (radius r,
  from the distance transform) sits in the palm, and the wrist lies about one
  radius beyond its centre, towards the border;
- pixels at least 2.5 r nearer the border than the palm centre are forearm
  (background); the band in between is IGNORE, because the estimate is rough.

Components that do not touch the border (a hand in a sleeve, a hand alone) are
kept as they are.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

BACKGROUND, HAND, IGNORE = 0, 1, 255

#: Wrist and forearm boundaries, in palm radii from the palm centre towards the border.
WRIST_RADII = 1.1
FOREARM_RADII = 2.5
#: Components smaller than this share of the image are left alone (specks, fingertips at the edge).
MIN_COMPONENT_SHARE = 0.002
#: With landmarks: the band just behind the wrist line is IGNORE, the forearm beyond it BACKGROUND,
#: in units of the wrist-to-middle-knuckle length.
LANDMARK_WRIST_BAND = 0.15
LANDMARK_FOREARM_AT = 0.6
#: Wrist landmarks of the forearm sources in ../shared/data (tools/wrist_landmarks.py).
WRIST_LANDMARKS = Path(__file__).with_name("wrist_landmarks.csv")

#: (wrist x, wrist y, middle knuckle x, middle knuckle y) in pixels of the displayed image.
Hand = tuple[float, float, float, float]


def labels_from_mask(mask: np.ndarray) -> np.ndarray:
    """A bool mask as a label map (HAND where True)."""
    return np.where(mask, HAND, BACKGROUND).astype(np.uint8)


def cut_at_wrist(mask: np.ndarray) -> np.ndarray:
    """Label map of a hand-plus-forearm mask under the hand-only policy, by geometry alone (see the
    module docstring); for photos without wrist landmarks."""
    labels = labels_from_mask(mask)
    components, count = ndimage.label(mask)
    border = np.zeros(mask.shape, bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    for index in range(1, count + 1):
        component = components == index
        contact = component & border
        if not contact.any() or component.mean() < MIN_COMPONENT_SHARE:
            continue
        from_border = ndimage.distance_transform_edt(~contact)
        inside = ndimage.distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1]
        far_half = component & (from_border >= 0.5 * from_border[component].max())
        centre = np.unravel_index(np.argmax(np.where(far_half, inside, -1)), mask.shape)
        radius, palm_distance = inside[centre], from_border[centre]
        wrist = palm_distance - WRIST_RADII * radius
        forearm = palm_distance - FOREARM_RADII * radius
        labels[component & (from_border < wrist)] = IGNORE
        labels[component & (from_border < forearm)] = BACKGROUND
    return labels


def cut_at_landmarks(mask: np.ndarray, hands: Sequence[Hand]) -> np.ndarray:
    """Label map of a hand-plus-forearm mask cut at each hand's wrist: mask pixels behind the line
    through the wrist, across the wrist -> middle-knuckle axis, are IGNORE for a short band and
    BACKGROUND beyond. Each mask pixel belongs to the hand whose wrist is nearest."""
    labels = labels_from_mask(mask)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]].astype(np.float32)
    owner = np.argmin([(xx - wx) ** 2 + (yy - wy) ** 2 for wx, wy, _, _ in hands], axis=0)
    for k, (wx, wy, kx, ky) in enumerate(hands):
        axis = np.array([kx - wx, ky - wy], np.float32)
        length = float(np.hypot(*axis))
        if length < 1:
            continue
        along = ((xx - wx) * axis[0] + (yy - wy) * axis[1]) / length**2  # in wrist-knuckle lengths
        mine = mask & (owner == k)
        labels[mine & (along < -LANDMARK_WRIST_BAND)] = IGNORE
        labels[mine & (along < -LANDMARK_FOREARM_AT)] = BACKGROUND
    return labels


def read_wrist_landmarks(path: str | Path = WRIST_LANDMARKS) -> dict[tuple[str, str], list[Hand]]:
    """(source, id) -> the hands found in that photo; empty when the file is not there."""
    hands: dict[tuple[str, str], list[Hand]] = {}
    if not Path(path).is_file():
        return hands
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            point = tuple(float(row[k]) for k in ("wrist_x", "wrist_y", "knuckle_x", "knuckle_y"))
            hands.setdefault((row["source"], row["id"]), []).append(point)
    return hands


@dataclass
class LabelPolicy:
    """What counts as hand, per source. The default (no forearm sources) takes every mask as drawn."""

    forearm_sources: frozenset[str] = frozenset()
    wrists: dict[tuple[str, str], list[Hand]] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LabelPolicy:
        """The policy `label_policy_flags` describe."""
        return cls.hand_only(args.forearm_sources.split(",")) if args.label_policy == "hand" else cls()

    @classmethod
    def hand_only(cls, forearm_sources: Iterable[str], landmarks: str | Path = WRIST_LANDMARKS) -> LabelPolicy:
        """The hand up to the wrist: forearms in `forearm_sources` cut at the wrist."""
        return cls(frozenset(forearm_sources), read_wrist_landmarks(landmarks))

    def labels(self, mask: np.ndarray, source: str, image_id: str) -> np.ndarray:
        """The training label map of one photo's mask."""
        if source not in self.forearm_sources:
            return labels_from_mask(mask)
        hands = self.wrists.get((source, image_id))
        return cut_at_landmarks(mask, hands) if hands else cut_at_wrist(mask)

    def truth(self, mask: np.ndarray, source: str, image_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Ground truth for scoring: (hand mask, pixels to score, or None for all)."""
        if source not in self.forearm_sources:
            return mask, None
        labels = self.labels(mask, source, image_id)
        return labels == HAND, labels != IGNORE


def label_policy_flags(default: str = "hand") -> argparse.ArgumentParser:
    """`--label-policy` and `--forearm-sources`, for every command that makes or scores labels: training
    and preparing default to the shipped models' policy ("hand"); evaluation passes "as-labelled", so its
    figures are against each source's masks as drawn unless asked."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "--label-policy",
        choices=["hand", "as-labelled"],
        default=default,
        help="hand: the hand up to the wrist (forearms in --forearm-sources are cut at the wrist found in "
        "train/wrist_landmarks.csv, or by geometry, and become background; evaluation leaves the band there "
        f"unscored); as-labelled: every mask as drawn (default: {default})",
    )
    flags.add_argument(
        "--forearm-sources", default="hgr,indoor", help="sources whose masks include the bare forearm (comma-separated)"
    )
    return flags

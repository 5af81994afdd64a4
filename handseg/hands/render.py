"""Hand landmarks drawn as pictures a network can read, and a mask split into one mask per hand.

`hand_channels` is the one drawing of landmarks that both inference (`handseg.Segmenter`) and training
(`train.trainset`) feed a landmark-reading model, so the two never differ. Sizes are relative to each
hand (its wrist to middle-knuckle distance), so a drawing at any resolution is the same picture scaled.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from handseg.hands.landmarker import BONES, PALM

#: What each extra input channel shows: the skeleton's bones, the filled palm, and a bar across the
#: wrist (where the label policy "the hand up to the wrist" ends the hand).
HAND_CHANNELS = ("bones", "palm", "wrist")
BONE_WIDTH = 0.16  #: bones' width, as a share of the hand's size
WRIST_LENGTH, WRIST_WIDTH = 0.9, 0.18  #: the wrist bar's length and width, likewise


def hand_size(points: np.ndarray) -> float:
    """A hand's scale in pixels: wrist (0) to the middle finger's knuckle (9), at least one pixel."""
    return max(1.0, float(np.hypot(*(points[9, :2] - points[0, :2]))))


def hand_channels(hands: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """float32 (3, height, width) in [0, 1]: `HAND_CHANNELS` for every hand's landmarks ((21, 2+) arrays in
    pixels of an image of that size). No hands: zeros."""
    planes = [Image.new("L", (width, height)) for _ in HAND_CHANNELS]
    bones, palm, wrist = (ImageDraw.Draw(plane) for plane in planes)
    for points in hands:
        xy = [(float(x), float(y)) for x, y in points[:, :2]]
        size = hand_size(points)
        line = max(1, round(BONE_WIDTH * size))
        for a, b in BONES:
            bones.line([xy[a], xy[b]], fill=255, width=line)
        palm.polygon([xy[i] for i in PALM], fill=255)
        axis = (points[9, :2] - points[0, :2]) / size
        across = np.array([-axis[1], axis[0]]) * WRIST_LENGTH * size / 2
        ends = [tuple(points[0, :2] - across), tuple(points[0, :2] + across)]
        wrist.line([(float(x), float(y)) for x, y in ends], fill=255, width=max(1, round(WRIST_WIDTH * size)))
    return np.stack([np.asarray(plane, np.float32) for plane in planes]) / 255.0


def label_hands(mask: np.ndarray, hands: list[np.ndarray], *, reach: float = 1.5, grid: int = 160) -> np.ndarray:
    """uint8 (H, W): 0 where `mask` is False; else 1..N, the hand (landmarks in `mask`'s pixels) whose
    skeleton is nearest in hand sizes, or N + 1 where no hand's skeleton is within `reach` hand sizes
    (a hand the detector missed, or something that is not a hand). Worked out on a grid of at most `grid`
    cells a side, which is enough to part two hands, then read at full size."""
    height, width = mask.shape
    if not hands:
        return mask.astype(np.uint8)
    step = max(1.0, max(height, width) / grid)
    gh, gw = max(1, round(height / step)), max(1, round(width / step))
    row = np.minimum((np.arange(height) * gh) // height, gh - 1)  # each pixel row's grid row
    column = np.minimum((np.arange(width) * gw) // width, gw - 1)
    # Only cells holding some mask are measured (hands cover a small part of most photos). Rows are
    # OR-ed 8 pixels to a byte: a reduction over bools a byte each took 5x as long.
    bands = np.bitwise_or.reduceat(np.packbits(mask, axis=1), np.searchsorted(row, np.arange(gh)), axis=0)
    bands = np.unpackbits(bands, axis=1, count=width).view(bool)
    occupied = np.logical_or.reduceat(bands, np.searchsorted(column, np.arange(gw)), axis=1)
    cy, cx = np.nonzero(occupied)
    cells = np.stack([(cx + 0.5) * width / gw, (cy + 0.5) * height / gh], axis=1)
    distances = np.stack([_skeleton_distance(cells, points) / hand_size(points) for points in hands], axis=1)
    grid_labels = np.zeros((gh, gw), np.uint8)
    if len(cells):
        nearest = distances.argmin(axis=1)
        grid_labels[cy, cx] = np.where(distances.min(axis=1) <= reach, nearest + 1, len(hands) + 1)
    # Rows first (a small gather), then columns repeated, then the mask as an in-place product: no
    # full-size index arrays or boolean selections.
    labels = np.repeat(grid_labels[row], np.bincount(column, minlength=gw), axis=1)
    labels *= mask
    return labels


def _skeleton_distance(cells: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Each cell's distance (pixels) to the nearest bone of one hand, or to its palm's inside (0)."""
    # x and y apart, as (cells, bones) arrays: numpy is slow over a trailing axis of two.
    x, y = cells[:, 0:1], cells[:, 1:2]
    x0, y0 = points[[a for a, _ in BONES], 0][None], points[[a for a, _ in BONES], 1][None]
    dx, dy = points[[b for _, b in BONES], 0][None] - x0, points[[b for _, b in BONES], 1][None] - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / np.maximum(dx * dx + dy * dy, 1e-9), 0, 1)
    distance = np.sqrt(((x0 + t * dx - x) ** 2 + (y0 + t * dy - y) ** 2).min(axis=1))
    inside = _inside_polygon(cells, points[list(PALM), :2])
    return np.where(inside, 0.0, distance)


def _inside_polygon(cells: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    x, y = cells[:, 0:1], cells[:, 1:2]
    x0, y0 = polygon[:, 0][None], polygon[:, 1][None]
    x1, y1 = np.roll(polygon[:, 0], -1)[None], np.roll(polygon[:, 1], -1)[None]
    crosses = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / np.where(y1 != y0, y1 - y0, 1e-9) + x0)
    return crosses.sum(axis=1) % 2 == 1

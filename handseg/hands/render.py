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
    labels = np.zeros((height, width), np.uint8)
    if not mask.any():
        return labels
    if not hands:
        labels[mask] = 1
        return labels
    step = max(1.0, max(height, width) / grid)
    gh, gw = max(1, round(height / step)), max(1, round(width / step))
    ys = (np.arange(gh) + 0.5) * height / gh
    xs = (np.arange(gw) + 0.5) * width / gw
    cells = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    distances = np.stack([_skeleton_distance(cells, points) / hand_size(points) for points in hands], axis=1)
    nearest = distances.argmin(axis=1)
    cell_labels = np.where(distances.min(axis=1) <= reach, nearest + 1, len(hands) + 1).astype(np.uint8)
    grid_labels = cell_labels.reshape(gh, gw)
    row = np.minimum((np.arange(height) * gh) // height, gh - 1)
    column = np.minimum((np.arange(width) * gw) // width, gw - 1)
    labels[mask] = grid_labels[row[:, None], column[None, :]][mask]
    return labels


def _skeleton_distance(cells: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Each cell's distance (pixels) to the nearest bone of one hand, or to its palm's inside (0)."""
    start = points[[a for a, _ in BONES], :2][None]
    end = points[[b for _, b in BONES], :2][None]
    direction = end - start
    length = np.maximum((direction**2).sum(-1), 1e-9)
    offset = cells[:, None, :] - start
    t = np.clip((offset * direction).sum(-1) / length, 0, 1)
    nearest = start + t[..., None] * direction
    distance = np.sqrt(((cells[:, None, :] - nearest) ** 2).sum(-1)).min(axis=1)
    inside = _inside_polygon(cells, points[list(PALM), :2])
    return np.where(inside, 0.0, distance)


def _inside_polygon(cells: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    x, y = cells[:, 0:1], cells[:, 1:2]
    x0, y0 = polygon[:, 0][None], polygon[:, 1][None]
    x1, y1 = np.roll(polygon[:, 0], -1)[None], np.roll(polygon[:, 1], -1)[None]
    crosses = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / np.where(y1 != y0, y1 - y0, 1e-9) + x0)
    return crosses.sum(axis=1) % 2 == 1

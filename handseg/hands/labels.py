"""Which hand each pixel of a mask belongs to: the nearest hand skeleton within reach, or none (a hand
nobody found, or something that is not a hand), and nothing behind a hand's wrist (the forearm)."""

from __future__ import annotations

import numpy as np

from handseg.hands.topology import BONES, PALM, hand_length, hand_size

#: How far a hand reaches from its skeleton, in hand sizes (wrist to middle knuckle): fingers' flesh,
#: the palm's edge, a thumb the model placed a little off.
REACH = 1.5
#: Where the forearm begins: this far behind the line across the wrist, in hand lengths (`behind_wrist`).
#: The label policy (the hand up to the wrist) is unsure between 0.15 and 0.6 of a hand size behind it
#: (`train/labels.py`) and calls what lies beyond forearm; a nearer cut also cut hands whose landmarks
#: were read askew.
FOREARM_BEHIND_WRIST = 0.6
#: Cells a side of the grid hands' labels are worked out on (`label_hands`).
GRID = 160


def label_hands(
    mask: np.ndarray,
    hands: list[np.ndarray],
    *,
    reach: float = REACH,
    cut_at_wrist: bool = False,
    unexplained: bool = True,
    grid: int = GRID,
) -> np.ndarray:
    """uint8 (H, W): 0 where `mask` is False; else 1..N, the hand (landmarks in `mask`'s pixels) whose
    skeleton is nearest in hand sizes, or N + 1 where no hand's skeleton is within `reach` hand sizes
    (a hand the detector missed, or something that is not a hand) and, with `cut_at_wrist`, where the
    nearest hand's pixel lies behind its wrist (`FOREARM_BEHIND_WRIST`: the forearm); 0 there too without
    `unexplained`. Worked out on a grid of at most `grid` cells a side, which is enough to part two hands,
    then read at full size."""
    if not hands:
        return mask.astype(np.uint8)
    return GridLabels(mask, hands, reach, cut_at_wrist, unexplained, grid).full()


class GridLabels:
    """`label_hands` in two steps: each grid cell holding some of `mask` labelled (`cells`: the labels
    present), then those labels read at full size (`full`)."""

    def __init__(
        self, mask: np.ndarray, hands: list[np.ndarray], reach: float, cut_at_wrist: bool, unexplained: bool, grid: int
    ) -> None:
        height, width = mask.shape
        step = max(1.0, max(height, width) / grid)
        gh, gw = max(1, round(height / step)), max(1, round(width / step))
        self.mask = mask
        self.row = np.minimum((np.arange(height) * gh) // height, gh - 1)  # each pixel row's grid row
        self.column = np.minimum((np.arange(width) * gw) // width, gw - 1)
        # Only cells holding some mask are measured (hands cover a small part of most photos). Rows are
        # OR-ed 8 pixels to a byte: a reduction over bools a byte each took 5x as long.
        bands = np.bitwise_or.reduceat(np.packbits(mask, axis=1), np.searchsorted(self.row, np.arange(gh)), axis=0)
        bands = np.unpackbits(bands, axis=1, count=width).view(bool)
        occupied = np.logical_or.reduceat(bands, np.searchsorted(self.column, np.arange(gw)), axis=1)
        self.cy, self.cx = cy, cx = np.nonzero(occupied)
        self.labels = np.zeros((gh, gw), np.uint8)
        if not len(cy):
            return
        cells = np.stack([(cx + 0.5) * width / gw, (cy + 0.5) * height / gh], axis=1)
        distances = np.stack([skeleton_distance(cells, points) / hand_size(points) for points in hands], axis=1)
        nearest = distances.argmin(axis=1)
        explained = distances.min(axis=1) <= reach
        if cut_at_wrist:
            along = np.stack([behind_wrist(cells, points) for points in hands], axis=1)
            explained &= along[np.arange(len(cells)), nearest] < FOREARM_BEHIND_WRIST
        self.labels[cy, cx] = np.where(explained, nearest + 1, len(hands) + 1 if unexplained else 0)

    def cells(self) -> np.ndarray:
        """The labels some pixel of the mask takes (each labelled cell holds some of it), sorted."""
        return np.unique(self.labels[self.cy, self.cx])

    def full(self) -> np.ndarray:
        """uint8 (H, W): each pixel of the mask its cell's label, 0 elsewhere."""
        labels = np.zeros(self.mask.shape, np.uint8)
        if not len(self.cy):
            return labels
        # Only over the labelled cells' bounding box: rows first (a small gather), then columns repeated,
        # then the mask as an in-place product; no full-size index arrays or boolean selections.
        (top, bottom), (left, right) = (self.cy.min(), self.cy.max()), (self.cx.min(), self.cx.max())
        rows = slice(np.searchsorted(self.row, top), np.searchsorted(self.row, bottom, side="right"))
        columns = slice(np.searchsorted(self.column, left), np.searchsorted(self.column, right, side="right"))
        widths = np.bincount(self.column, minlength=right + 1)[left : right + 1]
        box = np.repeat(self.labels[self.row[rows], left : right + 1], widths, axis=1)
        box *= self.mask[rows, columns]
        labels[rows, columns] = box
        return labels


def behind_wrist(cells: np.ndarray, points: np.ndarray) -> np.ndarray:
    """How far each cell (x, y) lies behind a hand's wrist, along its axis in the photo (middle knuckle ->
    wrist), in hand lengths (3D: a hand pointing at the camera is short in the photo, and a cut measured in
    its photographed size went through its knuckles: EgoHands val 0.873 -> 0.881 dice); negative in front
    of the wrist (the palm, the fingers)."""
    axis = (points[9, :2] - points[0, :2]) / hand_size(points)
    return -((cells - points[0, :2]) @ axis) / hand_length(points)


def skeleton_distance(cells: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Each cell's distance (pixels) to the nearest bone of one hand, or to its palm's inside (0)."""
    # x and y apart, as (cells, bones) arrays: numpy is slow over a trailing axis of two.
    x, y = cells[:, 0:1], cells[:, 1:2]
    x0, y0 = points[[a for a, _ in BONES], 0][None], points[[a for a, _ in BONES], 1][None]
    dx, dy = points[[b for _, b in BONES], 0][None] - x0, points[[b for _, b in BONES], 1][None] - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / np.maximum(dx * dx + dy * dy, 1e-9), 0, 1)
    distance = np.sqrt(((x0 + t * dx - x) ** 2 + (y0 + t * dy - y) ** 2).min(axis=1))
    inside = inside_polygon(cells, points[list(PALM), :2])
    return np.where(inside, 0.0, distance)


def inside_polygon(cells: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Whether each cell (x, y) lies inside a polygon (corners (x, y)), by the even-odd rule."""
    x, y = cells[:, 0:1], cells[:, 1:2]
    x0, y0 = polygon[:, 0][None], polygon[:, 1][None]
    x1, y1 = np.roll(polygon[:, 0], -1)[None], np.roll(polygon[:, 1], -1)[None]
    crosses = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / np.where(y1 != y0, y1 - y0, 1e-9) + x0)
    return crosses.sum(axis=1) % 2 == 1

"""Hand landmarks for training a network that reads them: found by handseg's own landmark stage (so
training sees the landmarks inference will see, misses and all), moved with every geometric change of a
training crop, and made as unreliable as a detector is: hands dropped, landmarks jittered, skeletons
where there is no hand.

Landmarks travel as a list of float32 (21, 2) arrays, one per hand, in pixels of the image they belong
to; `handseg.hands.hand_channels` draws them for the network, at the end, on the final crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from handseg import resize_rgb, working_size
from handseg.hands import HandLandmarker, hand_size

Points = list[np.ndarray]

_landmarker: HandLandmarker | None = None


def detect_hands(rgb: np.ndarray, working_side: int) -> Points:
    """The hands handseg finds in `rgb` when it segments it at `working_side` (the image resized so its
    longer side is at most that, as `handseg.segment` sees it), in `rgb`'s pixels. One landmarker per
    process (each data-loading worker builds its own)."""
    global _landmarker
    if _landmarker is None:
        _landmarker = HandLandmarker(threads=1)
    height, width = rgb.shape[:2]
    small = resize_rgb(rgb, working_size(height, width, max_side=working_side))
    sx, sy = width / small.shape[1], height / small.shape[0]
    return [hand.landmarks[:, :2] * np.array([sx, sy], np.float32) for hand in _landmarker(small)]


def moved(points: Points, matrix: np.ndarray) -> Points:
    """Every hand's landmarks through a 2x3 affine `matrix` (new = matrix @ (x, y, 1))."""
    return [(p @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32) for p in points]


def shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def scale(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]])


def mirror(width: float) -> np.ndarray:
    """A left-right flip of an image `width` pixels wide (array[:, ::-1])."""
    return np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0]])


def turned(degrees: float, size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    """PIL's `rotate(degrees)` (counter-clockwise, about the centre) of an image (height, width) = size
    onto a canvas of `new_size` (the same size, or larger with expand=True)."""
    t = math.radians(degrees)
    (h, w), (nh, nw) = size, new_size
    c, s = math.cos(t), math.sin(t)
    # new = centre' + [[c, s], [-s, c]] @ (old - centre)
    return np.array([[c, s, nw / 2 - c * w / 2 - s * h / 2], [-s, c, nh / 2 + s * w / 2 - c * h / 2]])


@dataclass(frozen=True)
class LandmarkNoise:
    """How unreliable training makes the landmarks (`python -m train.run --help` has the flags)."""

    none_prob: float = 0.15  #: crops given no landmarks at all (the network must not depend on them)
    drop_prob: float = 0.15  #: each remaining hand dropped (a hand the detector missed)
    jitter_prob: float = 0.5  #: hands whose landmarks are moved a little
    jitter: float = 0.04  #: per-landmark noise, as a share of the hand's size (the whole hand moves up to 2x)
    false_prob: float = 0.2  #: crops given a skeleton where there is no hand (a false detection)

    def apply(self, points: Points, rng: np.random.Generator, spare: np.ndarray | None, side: int) -> Points:
        """`points` on a `side` x `side` crop, made unreliable. `spare`: a real hand's landmarks (any
        image's pixels) to draw as a false detection, anywhere on the crop, at any size and angle."""
        if rng.random() < self.none_prob:
            return []
        kept = [p for p in points if rng.random() >= self.drop_prob]
        out = []
        for p in kept:
            if rng.random() < self.jitter_prob:
                size = hand_size(p)
                p = p + rng.normal(0, self.jitter * size, p.shape) + rng.normal(0, 2 * self.jitter * size, 2)
            out.append(p.astype(np.float32))
        if spare is not None and rng.random() < self.false_prob:
            size = hand_size(spare)
            target = rng.uniform(0.08, 0.3) * side  # its wrist-to-knuckle length on the crop
            centre = spare.mean(axis=0)
            angle = rng.uniform(0, 2 * math.pi)
            c, s = math.cos(angle), math.sin(angle)
            placed = (spare - centre) @ (np.array([[c, -s], [s, c]]) * target / size).T + rng.uniform(0, side, 2)
            out.append(placed.astype(np.float32))
        return out

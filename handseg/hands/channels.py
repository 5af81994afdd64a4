"""Hand landmarks drawn as the extra input channels of a network that reads them.

`hand_channels` is the one drawing of landmarks that both inference (`handseg.Segmenter`) and training
(`train.trainset`) feed a landmark-reading model, so the two never differ. Sizes are relative to each
hand (its wrist to middle-knuckle distance), so a drawing at any resolution is the same picture scaled.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from handseg.hands.topology import BONES, PALM, hand_size

#: What each extra input channel shows: the skeleton's bones, the filled palm, and a bar across the
#: wrist (where the label policy "the hand up to the wrist" ends the hand).
HAND_CHANNELS = ("bones", "palm", "wrist")
BONE_WIDTH = 0.16  #: bones' width, as a share of the hand's size
WRIST_LENGTH, WRIST_WIDTH = 0.9, 0.18  #: the wrist bar's length and width, likewise


def hand_channels(hands: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """float32 (3, height, width) in [0, 1]: `HAND_CHANNELS` for every hand's landmarks ((21, 2+) arrays in
    pixels of an image of that size). No hands: zeros."""
    if not hands:  # the mask-only path and most hand-free photos: nothing to draw
        return np.zeros((len(HAND_CHANNELS), height, width), np.float32)
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
    drawn = np.stack([np.asarray(plane) for plane in planes]).astype(np.float32)
    drawn /= 255.0
    return drawn

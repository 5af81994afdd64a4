"""Where the landmark model looks: the square, rotated regions MediaPipe derives from a palm the detector
found or from the last frame's landmarks, the enlargement of small photos, and which hands are one."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from handseg.hands.topology import Hand

#: Below this longer side a photo is enlarged (bicubic) before detection: the landmark model's crops of a
#: small photo's hands are blurred by bilinear enlargement, and MediaPipe misses hands in 200 px face crops.
UPSCALE_BELOW = 384


def enlarged_for_detection(image: np.ndarray) -> tuple[np.ndarray, float]:
    """(image, factor): a small image upscaled (bicubic) so its longer side is UPSCALE_BELOW, as the palm
    detector needs; a larger one as it is, factor 1. MediaPipe's reference landmarks are read on the same."""
    height, width = image.shape[:2]
    if max(height, width) >= UPSCALE_BELOW:
        return image, 1.0
    factor = UPSCALE_BELOW / max(height, width)
    size = (round(width * factor), round(height * factor))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)), factor


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (x0, y0, x1, y1) with each of `others` (N, 4)."""
    x0, y0 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    x1, y1 = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def normalized_angle(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def region_from_palm(box: np.ndarray, points: np.ndarray, width: int, height: int):
    """A palm's box (2x2: top-left, bottom-right, pixels) and keypoints -> the square region the landmark
    model reads: rotated so wrist (0) -> middle knuckle (2) points up, shifted towards the fingers by half
    the box, 2.6 times the box's longer side (MediaPipe's PalmDetectionDetectionToRoi)."""
    (x0, y0), (x1, y1) = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    (wx, wy), (mx, my) = points[0], points[2]
    rotation = normalized_angle(math.pi / 2 - math.atan2(-(my - wy), mx - wx))
    # shift_y = -0.5 of the box's height, along the rotated y axis
    cx += 0.5 * h * math.sin(rotation)
    cy -= 0.5 * h * math.cos(rotation)
    side = max(w, h) * 2.6
    return float(cx), float(cy), float(side), float(rotation)


def region_from_landmarks(hand: Hand) -> tuple[float, float, float, float]:
    """The region to read a tracked hand in next: its landmarks' rotated bounding box (wrist -> the middle of
    the index, middle and ring fingers' knuckles points up), twice as large, nudged towards the fingers
    (MediaPipe's HandLandmarkLandmarksToRoi)."""
    points = hand.landmarks[:, :2].astype(np.float64)
    (wx, wy) = points[0]
    mx, my = (points[5] + points[13]) / 2
    mx, my = (mx + points[9][0]) / 2, (my + points[9][1]) / 2
    rotation = normalized_angle(math.pi / 2 - math.atan2(-(my - wy), mx - wx))
    centre = (points.max(0) + points.min(0)) / 2
    cos, sin = math.cos(-rotation), math.sin(-rotation)
    local = (points - centre) @ np.array([[cos, sin], [-sin, cos]])
    low, high = local.min(0), local.max(0)
    mid = (low + high) / 2
    cx = centre[0] + mid[0] * math.cos(rotation) - mid[1] * math.sin(rotation)
    cy = centre[1] + mid[0] * math.sin(rotation) + mid[1] * math.cos(rotation)
    w, h = high - low
    cx += 0.1 * h * math.sin(rotation)
    cy -= 0.1 * h * math.cos(rotation)
    return float(cx), float(cy), float(max(w, h) * 2.0), float(rotation)


def distinct(hands: list[Hand]) -> list[Hand]:
    """The hands with no two the same hand (their landmark boxes overlapping by IoU above 0.5, as
    MediaPipe associates tracked and detected hands), most present first."""
    kept: list[Hand] = []
    for hand in sorted(hands, key=lambda h: -h.score):
        box = np.array(hand.box)
        if all(iou(box, np.array([other.box]))[0] <= 0.5 for other in kept):
            kept.append(hand)
    return kept

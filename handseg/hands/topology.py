"""The hand as MediaPipe Hands describes it: 21 landmarks, the skeleton's bones, the palm, a hand's size,
and `Hand`, what the landmark model reads of one hand."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The 21 landmarks: wrist, then four per finger from the palm out (thumb, index, middle, ring, little).
LANDMARK_NAMES = (
    "wrist",
    *(f"thumb_{joint}" for joint in ("cmc", "mcp", "ip", "tip")),
    *(
        f"{finger}_{joint}"
        for finger in ("index", "middle", "ring", "little")
        for joint in ("mcp", "pip", "dip", "tip")
    ),
)
#: The skeleton's bones, as pairs of landmark indices (MediaPipe's HAND_CONNECTIONS).
BONES = (
    (0, 1), (1, 2), (2, 3), (3, 4),
    (0, 5), (5, 6), (6, 7), (7, 8),
    (5, 9), (9, 10), (10, 11), (11, 12),
    (9, 13), (13, 14), (14, 15), (15, 16),
    (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip
#: The palm's outline: wrist, the thumb's base and the four knuckles.
PALM = (0, 1, 5, 9, 13, 17)


def hand_size(points: np.ndarray) -> float:
    """A hand's scale in pixels: wrist (0) to the middle finger's knuckle (9), at least one pixel."""
    return max(1.0, float(np.hypot(*(points[9, :2] - points[0, :2]))))


def hand_length(points: np.ndarray) -> float:
    """The same length in three dimensions (z in the same pixel scale), at least one pixel: a hand pointing
    at the camera, short in the photo (a fist holding cards: a fifth of its 3D length), keeps its length."""
    return max(1.0, float(np.linalg.norm(points[9, :3] - points[0, :3])))


def landmarks_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): the bounding box of landmarks (21, 2+) in pixels."""
    x, y = points[:, 0], points[:, 1]
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


@dataclass
class Hand:
    """One hand: 21 landmarks (x, y in pixels of the image it was found in, z relative depth, in the same
    pixel scale), left or right as seen in an ordinary (unmirrored) photo, and how sure the model is."""

    landmarks: np.ndarray  #: float32 (21, 3)
    handedness: str  #: "left" or "right": whose hand, as seen in an unmirrored photo
    handedness_score: float  #: how sure `handedness` is, 0.5 to 1 (`handseg.hands.handedness.decided_side`)
    score: float  #: hand presence, 0 to 1: at least 0.5 where found; lower for a hand confirmed at the frame's edge
    palm_score: float | None = None  #: the palm detector's score (None when tracked from the last frame)
    #: The region the landmarks were read in: center (x, y), side, rotation (radians), in pixels.
    region: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0), repr=False)
    #: Found by confirming a region of the mask (`handseg.hands.confirm`), where no palm was detected.
    confirmed: bool = False
    #: The landmark model's own classifier: its chance that this is a right hand (before the geometry).
    classifier_right: float = 0.5

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the landmarks' bounding box in pixels."""
        return landmarks_box(self.landmarks)

    def scaled(self, factor_x: float, factor_y: float | None = None) -> Hand:
        """The same hand in an image resized by `factor_x` (and `factor_y`, default the same)."""
        fy = factor_x if factor_y is None else factor_y
        points = self.landmarks * np.array([factor_x, fy, factor_x], np.float32)
        cx, cy, side, rotation = self.region
        return Hand(points, self.handedness, self.handedness_score, self.score, self.palm_score,
                    (cx * factor_x, cy * fy, side * factor_x, rotation), self.confirmed,
                    self.classifier_right)  # fmt: skip

"""Left or right: the landmark model's classifier, and what the 21 landmarks say themselves.

A hand's chirality is in its points: the palm's normal, (index knuckle - wrist) x (little knuckle - wrist)
in image x, y and the model's depth z, points out of the palm of a right hand and out of the back of a
left one, and the fingers bend towards the palm. So the side the bent joints lie on, relative to that
normal, tells a right hand from a left, whichever way the palm faces; a flat hand says little
(`geometric_right`). It is combined with the classifier's own call, as log-odds (`decided_side`).

Both fail on the hands a head-worn camera sees of its wearer: held up from the bottom of the frame, seen
from behind, often holding something, they get a mirrored skeleton as often as not (EgoHands: the
classifier 65% right on the wearer's hands, 97% on the player's opposite). Such a hand (fingers up, wrist
in the frame's lowest part) is the wearer's own, so its side is the side of the frame it is in.
`benchmarks/handedness.py` measures each alone and the combination against labelled hands.
"""

from __future__ import annotations

import math

import numpy as np

from handseg.hands.topology import hand_size

#: The joints beyond the knuckles (thumb: its IP joint and tip), whose side of the palm's plane is read.
BENDING_JOINTS = (3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20)
#: How sure a bend of one hand size makes the geometry, in log-odds (chosen on EgoHands' labelled sides).
GEOMETRY_WEIGHT = 4.0
#: A hand held up from the bottom of the frame: its middle knuckle this many hand sizes above its wrist,
#: and its wrist below this share of the frame's height (chosen on EgoHands, as GEOMETRY_WEIGHT).
HELD_UP, LOW_IN_FRAME = 0.3, 0.6


def palm_bend(landmarks: np.ndarray) -> float:
    """How far the bending joints lie, on average, on the side of the palm's plane its normal points to,
    in hand sizes: positive for a right hand, negative for a left."""
    points = landmarks.astype(np.float64)
    wrist = points[0]
    normal = np.cross(points[5] - wrist, points[17] - wrist)
    length = np.linalg.norm(normal)
    if length == 0:
        return 0.0
    return float(np.mean((points[list(BENDING_JOINTS)] - wrist) @ (normal / length)) / hand_size(landmarks))


def geometric_right(landmarks: np.ndarray) -> float:
    """The chance the hand is a right hand, from its landmarks alone (`palm_bend`)."""
    return 1.0 / (1.0 + math.exp(-GEOMETRY_WEIGHT * palm_bend(landmarks)))


def held_up_from_below(landmarks: np.ndarray, height: int) -> bool:
    """Whether a hand is held up from the bottom of a frame `height` pixels high, as a head-worn camera
    sees its wearer's hands: fingers up (`HELD_UP`) and the wrist low (`LOW_IN_FRAME`), or the wrist below
    the frame."""
    up = (landmarks[0, 1] - landmarks[9, 1]) / hand_size(landmarks)
    reaching_in = landmarks[0, 1] >= height  # its wrist below the frame: a hand reaching in from below
    return bool(reaching_in or (up > HELD_UP and landmarks[0, 1] > LOW_IN_FRAME * height))


def wearer_side(x: float, width: int, classifier_right: float) -> tuple[str, float]:
    """("left" or "right", confidence) of the camera wearer's own hand at `x` in a frame `width` pixels wide:
    the half of the frame it is in, as sure as the classifier was of its own call."""
    return ("left" if x < width / 2 else "right"), max(classifier_right, 1.0 - classifier_right)


def decided_side(landmarks: np.ndarray, classifier_right: float, frame: tuple[int, int]) -> tuple[str, float]:
    """("left" or "right", confidence 0.5 to 1) of a hand in a frame (height, width): for a hand held up
    from below (`held_up_from_below`), the half of the frame its wrist is in, as sure as the classifier
    was of its own call; else the classifier's chance of a right hand and the geometry's, their log-odds
    added."""
    height, width = frame
    if held_up_from_below(landmarks, height):
        return wearer_side(float(landmarks[0, 0]), width, classifier_right)
    p = min(max(classifier_right, 1e-6), 1 - 1e-6)
    log_odds = math.log(p / (1 - p)) + GEOMETRY_WEIGHT * palm_bend(landmarks)
    right = 1.0 / (1.0 + math.exp(-log_odds))
    return ("right", right) if right >= 0.5 else ("left", 1.0 - right)

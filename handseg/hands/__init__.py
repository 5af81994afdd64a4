"""Hand landmarks (MediaPipe Hands' models on onnxruntime and numpy), drawn for a network to read, and a
mask split into one mask per hand."""

from handseg.hands.landmarker import BONES, LANDMARK_NAMES, PALM, Hand, HandLandmarker, landmarks_unavailable
from handseg.hands.render import HAND_CHANNELS, hand_channels, label_hands

__all__ = [
    "BONES",
    "HAND_CHANNELS",
    "LANDMARK_NAMES",
    "PALM",
    "Hand",
    "HandLandmarker",
    "hand_channels",
    "label_hands",
    "landmarks_unavailable",
]

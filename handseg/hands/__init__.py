"""Hand landmarks: MediaPipe Hands' models on onnxruntime and numpy, in MediaPipe's stages (the palm
detector, region geometry, the landmark model, tracking, the warp that crops), the hand's topology, and
the landmarks drawn as a network's extra input channels."""

from handseg.hands.channels import HAND_CHANNELS, hand_channels
from handseg.hands.landmarker import HandLandmarker, landmarks_unavailable
from handseg.hands.topology import BONES, LANDMARK_NAMES, PALM, Hand, hand_size, landmarks_box

__all__ = [
    "BONES",
    "HAND_CHANNELS",
    "LANDMARK_NAMES",
    "PALM",
    "Hand",
    "HandLandmarker",
    "hand_channels",
    "hand_size",
    "landmarks_box",
    "landmarks_unavailable",
]

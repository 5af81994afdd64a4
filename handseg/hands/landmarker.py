"""Hands found by their shape: MediaPipe Hands' palm detector and 21-point landmark model, run with
onnxruntime and numpy alone (no mediapipe, no OpenCV).

    detector = HandLandmarker()          # the two shipped ONNX files (handseg/hands/models/)
    hands = detector(rgb)                # list[Hand], up to max_hands, most confident first

The pipeline is MediaPipe's (hand_landmark_tracking_cpu, model complexity 0): the image letterboxed to
192x192 for the palm detector; its SSD anchors decoded, weighted non-maximum suppression, each palm turned
into a square region rotated so the wrist -> middle knuckle points up (scale 2.6, shift -0.5); that region
cropped to 224x224 (rounded as OpenCV rounds: `handseg.hands.warp`) for the landmark model; hand presence
above 0.5 kept; landmarks projected back. Its handedness assumes a mirrored (selfie) image, so it is
turned round here, then weighed with what the landmarks say (`handseg.hands.handedness`): `Hand.handedness`
is the hand as seen in an ordinary photo. Following hands through a
video's frames is `handseg.hands.tracking`'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handseg.hands.confirm import confirm_hands
from handseg.hands.detector import PalmDetector
from handseg.hands.landmark_model import LandmarkModel
from handseg.hands.regions import distinct, enlarged_for_detection
from handseg.hands.topology import Hand
from handseg.image import resize_mask

MODELS_DIR = Path(__file__).resolve().parent / "models"
PALM_MODEL = MODELS_DIR / "palm_detection_lite.onnx"
LANDMARK_MODEL = MODELS_DIR / "hand_landmark_lite.onnx"


def landmarks_unavailable() -> str | None:
    """Why hand landmarks cannot be found here (onnxruntime cannot be imported), or None when they can."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "hand landmarks need onnxruntime: pip install onnxruntime"
    return None


class HandLandmarker:
    """MediaPipe Hands on onnxruntime (see the module). `threads`: onnxruntime's threads for both models;
    `max_hands`: how many hands at most (MediaPipe's default, 2)."""

    def __init__(self, *, threads: int = 1, max_hands: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Spinning threads steal the cores a busy machine needs (3x slower on 2 loaded cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.palm_regions = PalmDetector(ort.InferenceSession(str(PALM_MODEL), options, providers=providers))
        self.read_hand = LandmarkModel(ort.InferenceSession(str(LANDMARK_MODEL), options, providers=providers))
        self.max_hands = max_hands

    def __call__(self, image: np.ndarray) -> list[Hand]:
        """The hands in `image` (RGB uint8, H x W x 3), palm detection first."""
        image, factor = enlarged_for_detection(image)
        return [hand.scaled(1 / factor) for hand in distinct(self.detect(image))[: self.max_hands]]

    def confirm(
        self, mask: np.ndarray, image: np.ndarray, hands: list[Hand], probability: np.ndarray | None = None
    ) -> tuple[list[Hand], np.ndarray]:
        """(hands, kept): `hands` (found in `image`) and the hands the landmark model confirms on the regions
        of `mask` (bool, `image`'s size) that they do not explain, and the mask's pixels that are hands
        (`handseg.hands.confirm`; `probability`: the network's, at `image`'s size)."""
        enlarged, factor = enlarged_for_detection(image)
        if factor == 1.0:
            return confirm_hands(mask, image, hands, self.read_hand, self.palm_regions, probability)
        size = enlarged.shape[:2]
        large = resize_mask(mask, size)
        large_probability = None if probability is None else resize_mask(probability, size)
        large_hands = [hand.scaled(factor) for hand in hands]
        confirmed, kept = confirm_hands(
            large, enlarged, large_hands, self.read_hand, self.palm_regions, large_probability
        )
        kept = resize_mask(kept, mask.shape) & mask
        return [hand.scaled(1 / factor) for hand in confirmed], kept

    def detect(self, image: np.ndarray) -> list[Hand]:
        """The hands in the regions where the palm detector finds palms (`image` as enlarged for detection)."""
        return [hand for region in self.palm_regions(image) if (hand := self.read_hand(image, region))]

"""MediaPipe's hand landmark model (224x224): one rotated square region in, 21 landmarks, hand presence
and left or right out, projected back to the photo's pixels."""

from __future__ import annotations

import numpy as np

from handseg.hands.handedness import decided_side
from handseg.hands.topology import Hand
from handseg.hands.warp import crop

#: The landmark model's square input side, in pixels.
LANDMARK_INPUT_SIZE = 224
MIN_PRESENCE = 0.5


class LandmarkModel:
    """The landmark model on an onnxruntime session of `hand_landmark_lite.onnx`."""

    def __init__(self, session) -> None:
        self.session = session
        self._names = [o.name for o in session.get_outputs()]

    def __call__(self, image: np.ndarray, region: tuple, min_presence: float = MIN_PRESENCE) -> Hand | None:
        """The landmark model on one square region (center x, center y, side, rotation[, palm score]):
        the hand, or None when its presence score is under `min_presence` (MediaPipe's 0.5)."""
        cx, cy, side, rotation = region[:4]
        patch, to_source = crop(image, (cx, cy), (side, side), rotation, LANDMARK_INPUT_SIZE)
        outputs = self.session.run(None, {"input_1": patch[None].astype(np.float32) / 255.0})
        named = dict(zip(self._names, outputs))
        presence = float(named["Identity_1"].reshape(-1)[0])
        if presence < min_presence:
            return None
        raw = named["Identity"].reshape(21, 3)
        points = np.empty((21, 3), np.float32)
        points[:, :2] = raw[:, :2] @ to_source[:, :2].T + to_source[:, 2]
        points[:, 2] = raw[:, 2] * (side / LANDMARK_INPUT_SIZE) / 0.4  # MediaPipe's normalize_z
        # The model's handedness score is for "left" in a mirrored (selfie) image: the right hand as photographed.
        right = float(named["Identity_2"].reshape(-1)[0])
        handedness, confidence = decided_side(points, right, image.shape[:2])
        palm = region[4] if len(region) > 4 else None
        return Hand(points, handedness, confidence, presence, palm, (cx, cy, side, rotation), classifier_right=right)

"""Hands found by their shape: MediaPipe Hands' palm detector and 21-point landmark model, run with
onnxruntime and numpy alone (no mediapipe, no OpenCV).

    detector = HandLandmarker()          # the two shipped ONNX files (handseg/hands/models/)
    hands = detector(rgb)                # list[Hand], up to max_hands, most confident first
    hands = detector.track(rgb, hands)   # video: the last frame's hands say where to look

The pipeline is MediaPipe's (hand_landmark_tracking_cpu, model complexity 0): the image letterboxed to
192x192 for the palm detector; its SSD anchors decoded, weighted non-maximum suppression, each palm turned
into a square region rotated so the wrist -> middle knuckle points up (scale 2.6, shift -0.5); that region
cropped to 224x224 (rounded as OpenCV rounds: `handseg.hands.warp`) for the landmark model; hand presence
above 0.5 kept; landmarks projected back. Its handedness assumes a mirrored (selfie) image, so it is
turned round here: `Hand.handedness` is the hand as seen in an ordinary photo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from handseg.hands.warp import crop

MODELS_DIR = Path(__file__).resolve().parent / "models"
PALM_MODEL = MODELS_DIR / "palm_detection_lite.onnx"
LANDMARK_MODEL = MODELS_DIR / "hand_landmark_lite.onnx"

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

#: The two models' square input sides, in pixels.
PALM_INPUT_SIZE, LANDMARK_INPUT_SIZE = 192, 224
_MIN_PALM_SCORE, _NMS_OVERLAP, _MIN_PRESENCE = 0.5, 0.3, 0.5
#: Below this longer side a photo is enlarged (bicubic) before detection: the landmark model's crops of a
#: small photo's hands are blurred by bilinear enlargement, and MediaPipe misses hands in 200 px face crops.
UPSCALE_BELOW = 384


@dataclass
class Hand:
    """One hand: 21 landmarks (x, y in pixels of the image it was found in, z relative depth, in the same
    pixel scale), left or right as seen in an ordinary (unmirrored) photo, and how sure the model is."""

    landmarks: np.ndarray  #: float32 (21, 3)
    handedness: str  #: "left" or "right": whose hand, as seen in an unmirrored photo
    handedness_score: float  #: the landmark model's confidence in `handedness`, 0.5 to 1
    score: float  #: hand presence, 0.5 to 1
    palm_score: float | None = None  #: the palm detector's score (None when tracked from the last frame)
    #: The region the landmarks were read in: center (x, y), side, rotation (radians), in pixels.
    region: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0), repr=False)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the landmarks' bounding box in pixels."""
        x, y = self.landmarks[:, 0], self.landmarks[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())

    @property
    def size(self) -> float:
        """The hand's scale in pixels: from the wrist to the middle finger's knuckle."""
        return float(np.linalg.norm(self.landmarks[9, :2] - self.landmarks[0, :2]))

    def scaled(self, factor_x: float, factor_y: float | None = None) -> Hand:
        """The same hand in an image resized by `factor_x` (and `factor_y`, default the same)."""
        fy = factor_x if factor_y is None else factor_y
        points = self.landmarks * np.array([factor_x, fy, factor_x], np.float32)
        cx, cy, side, rotation = self.region
        return Hand(points, self.handedness, self.handedness_score, self.score, self.palm_score,
                    (cx * factor_x, cy * fy, side * factor_x, rotation))  # fmt: skip

    def to_dict(self) -> dict:
        """JSON-ready: handedness, scores, box and the 21 landmarks as [x, y, z]."""
        return {
            "handedness": self.handedness,
            "handedness_score": round(self.handedness_score, 4),
            "score": round(self.score, 4),
            "box": [round(v, 1) for v in self.box],
            "landmarks": [[round(float(v), 2) for v in point] for point in self.landmarks],
        }


def _anchors() -> np.ndarray:
    """(2016, 2) anchor centres of the 192x192 palm detector (MediaPipe's SsdAnchorsCalculator: strides
    8, 16, 16, 16; two anchors per cell on the first layer, six on the merged stride-16 layers)."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = PALM_INPUT_SIZE // stride
        y, x = np.mgrid[:cells, :cells]
        cell_centres = np.stack([(x + 0.5) / cells, (y + 0.5) / cells], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(cell_centres, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


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
        self.palm = ort.InferenceSession(str(PALM_MODEL), options, providers=providers)
        self.landmark = ort.InferenceSession(str(LANDMARK_MODEL), options, providers=providers)
        self.max_hands = max_hands
        self._anchors = _anchors()

    def __call__(self, image: np.ndarray) -> list[Hand]:
        """The hands in `image` (RGB uint8, H x W x 3), palm detection first."""
        image, factor = enlarged_for_detection(image)
        hands = [hand for region in self.palm_regions(image) if (hand := self.read_hand(image, region))]
        return [hand.scaled(1 / factor) for hand in _distinct(hands)[: self.max_hands]]

    def track(self, image: np.ndarray, previous: list[Hand], *, detect: bool = False) -> list[Hand]:
        """The hands in a video frame: each of the last frame's hands is read again where it was (its region
        from its landmarks, as MediaPipe tracks); the palm detector runs only when there were none, when one
        was lost, or when `detect` asks (the caller's cadence, to pick up hands coming into view)."""
        image, factor = enlarged_for_detection(image)
        hands = []
        for before in previous:
            hand = self.read_hand(image, _region_from_landmarks(before.scaled(factor)))
            if hand is not None:
                hands.append(_steadier(hand, before))
        if detect or not hands or len(hands) < len(previous):
            found = [hand for region in self.palm_regions(image) if (hand := self.read_hand(image, region))]
            hands = _distinct(hands + found)
        return [hand.scaled(1 / factor) for hand in hands[: self.max_hands]]

    def palm_regions(self, image: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        """Square regions (center x, center y, side, rotation, palm score) in pixels where the palm detector
        finds hands, most confident first."""
        height, width = image.shape[:2]
        side = max(width, height)
        letterboxed, _ = crop(image, (width / 2, height / 2), (side, side), 0.0, PALM_INPUT_SIZE, border="zero")
        raw_boxes, raw_scores = self.palm.run(None, {"input_1": letterboxed[None].astype(np.float32) / 255.0})
        scores = 1 / (1 + np.exp(-np.clip(raw_scores[0, :, 0], -100, 100)))
        keep = scores >= _MIN_PALM_SCORE
        if not keep.any():
            return []
        raw, scores, anchors = raw_boxes[0, keep], scores[keep], self._anchors[keep]
        # Box centre, size and 7 keypoints, as shares of the 192-px letterbox.
        centres = raw[:, 0:2] / PALM_INPUT_SIZE + anchors
        sizes = raw[:, 2:4] / PALM_INPUT_SIZE
        keypoints = raw[:, 4:18].reshape(-1, 7, 2) / PALM_INPUT_SIZE + anchors[:, None, :]
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
        regions = []
        for box, points, score in _weighted_nms(boxes, keypoints, scores):
            # Letterbox shares -> pixels of the image: the letterbox is the image's longer side, centred.
            to_px = np.array([side, side], dtype=np.float64)
            offset = np.array([(side - width) / 2, (side - height) / 2])
            box_px = box.reshape(2, 2) * to_px - offset
            points_px = points * to_px - offset
            regions.append((*_region_from_palm(box_px, points_px, width, height), float(score)))
        return regions

    def read_hand(self, image: np.ndarray, region: tuple) -> Hand | None:
        """The landmark model on one square region (center x, center y, side, rotation[, palm score]):
        the hand, or None when its presence score is under 0.5."""
        cx, cy, side, rotation = region[:4]
        patch, to_source = crop(image, (cx, cy), (side, side), rotation, LANDMARK_INPUT_SIZE)
        outputs = self.landmark.run(None, {"input_1": patch[None].astype(np.float32) / 255.0})
        named = dict(zip((o.name for o in self.landmark.get_outputs()), outputs))
        presence = float(named["Identity_1"].reshape(-1)[0])
        if presence < _MIN_PRESENCE:
            return None
        raw = named["Identity"].reshape(21, 3)
        points = np.empty((21, 3), np.float32)
        points[:, :2] = raw[:, :2] @ to_source[:, :2].T + to_source[:, 2]
        points[:, 2] = raw[:, 2] * (side / LANDMARK_INPUT_SIZE) / 0.4  # MediaPipe's normalize_z
        # The model's handedness score is for "left" in a mirrored (selfie) image: the right hand as photographed.
        right = float(named["Identity_2"].reshape(-1)[0])
        handedness, confidence = ("right", right) if right >= 0.5 else ("left", 1.0 - right)
        palm = region[4] if len(region) > 4 else None
        return Hand(points, handedness, confidence, presence, palm, (cx, cy, side, rotation))


#: In a video, how much a tracked hand's left-or-right keeps of the frames before: the model's call flickers
#: on a hand seen edge-on or half out of view (0.62 "left" for a frame amid 0.97 "right"), a hand does not.
HANDEDNESS_MEMORY = 0.7


def _steadier(hand: Hand, before: Hand) -> Hand:
    """`hand` (tracked from `before`) with its chance of being a right hand averaged with the frames before."""

    def right(h: Hand) -> float:
        return h.handedness_score if h.handedness == "right" else 1.0 - h.handedness_score

    p = HANDEDNESS_MEMORY * right(before) + (1 - HANDEDNESS_MEMORY) * right(hand)
    hand.handedness, hand.handedness_score = ("right", p) if p >= 0.5 else ("left", 1.0 - p)
    return hand


def enlarged_for_detection(image: np.ndarray) -> tuple[np.ndarray, float]:
    """(image, factor): a small image upscaled (bicubic) so its longer side is UPSCALE_BELOW, as the palm
    detector needs; a larger one as it is, factor 1. MediaPipe's reference landmarks are read on the same."""
    height, width = image.shape[:2]
    if max(height, width) >= UPSCALE_BELOW:
        return image, 1.0
    factor = UPSCALE_BELOW / max(height, width)
    size = (round(width * factor), round(height * factor))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)), factor


def _weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray):
    """MediaPipe's weighted non-maximum suppression: the most confident box takes every box overlapping it
    by IoU above 0.3, and their score-weighted average location; its own score. Yields (box, points, score)."""
    order = list(np.argsort(-scores, kind="stable"))
    while order:
        top = order[0]
        ious = _iou(boxes[top], boxes[order])
        group = [i for i, iou in zip(order, ious) if iou > _NMS_OVERLAP]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        points = (keypoints[group] * weights[:, :, None]).sum(0) / weights.sum()
        yield box, points, scores[top]
        order = [i for i, iou in zip(order, ious) if iou <= _NMS_OVERLAP]


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    x1, y1 = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _normalized_angle(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def _region_from_palm(box: np.ndarray, points: np.ndarray, width: int, height: int):
    """A palm's box (2x2: top-left, bottom-right, pixels) and keypoints -> the square region the landmark
    model reads: rotated so wrist (0) -> middle knuckle (2) points up, shifted towards the fingers by half
    the box, 2.6 times the box's longer side (MediaPipe's PalmDetectionDetectionToRoi)."""
    (x0, y0), (x1, y1) = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    (wx, wy), (mx, my) = points[0], points[2]
    rotation = _normalized_angle(math.pi / 2 - math.atan2(-(my - wy), mx - wx))
    # shift_y = -0.5 of the box's height, along the rotated y axis
    cx += 0.5 * h * math.sin(rotation)
    cy -= 0.5 * h * math.cos(rotation)
    side = max(w, h) * 2.6
    return float(cx), float(cy), float(side), float(rotation)


def _region_from_landmarks(hand: Hand) -> tuple[float, float, float, float]:
    """The region to read a tracked hand in next: its landmarks' rotated bounding box (wrist -> the middle of
    the index, middle and ring fingers' knuckles points up), twice as large, nudged towards the fingers
    (MediaPipe's HandLandmarkLandmarksToRoi)."""
    points = hand.landmarks[:, :2].astype(np.float64)
    (wx, wy) = points[0]
    mx, my = (points[5] + points[13]) / 2
    mx, my = (mx + points[9][0]) / 2, (my + points[9][1]) / 2
    rotation = _normalized_angle(math.pi / 2 - math.atan2(-(my - wy), mx - wx))
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


def _distinct(hands: list[Hand]) -> list[Hand]:
    """The hands with no two the same hand (their landmark boxes overlapping by IoU above 0.5, as
    MediaPipe associates tracked and detected hands), most present first."""
    kept: list[Hand] = []
    for hand in sorted(hands, key=lambda h: -h.score):
        box = np.array(hand.box)
        if all(_iou(box, np.array([other.box]))[0] <= 0.5 for other in kept):
            kept.append(hand)
    return kept

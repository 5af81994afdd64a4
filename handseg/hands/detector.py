"""MediaPipe's palm detector (192x192 SSD): the photo letterboxed, its anchors decoded, weighted
non-maximum suppression, and each palm turned into the region the landmark model reads."""

from __future__ import annotations

import numpy as np

from handseg.hands.regions import iou, region_from_palm
from handseg.hands.warp import crop

#: The palm detector's square input side, in pixels.
PALM_INPUT_SIZE = 192
MIN_PALM_SCORE, NMS_OVERLAP = 0.5, 0.3


def anchors() -> np.ndarray:
    """(2016, 2) anchor centres of the 192x192 palm detector (MediaPipe's SsdAnchorsCalculator: strides
    8, 16, 16, 16; two anchors per cell on the first layer, six on the merged stride-16 layers)."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = PALM_INPUT_SIZE // stride
        y, x = np.mgrid[:cells, :cells]
        cell_centres = np.stack([(x + 0.5) / cells, (y + 0.5) / cells], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(cell_centres, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


class PalmDetector:
    """The palm detector on an onnxruntime session of `palm_detection_lite.onnx`."""

    def __init__(self, session) -> None:
        self.session = session
        self._anchors = anchors()

    def __call__(self, image: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        """Square regions (center x, center y, side, rotation, palm score) in pixels where the palm detector
        finds hands, most confident first."""
        height, width = image.shape[:2]
        side = max(width, height)
        letterboxed, _ = crop(image, (width / 2, height / 2), (side, side), 0.0, PALM_INPUT_SIZE, border="zero")
        raw_boxes, raw_scores = self.session.run(None, {"input_1": letterboxed[None].astype(np.float32) / 255.0})
        scores = 1 / (1 + np.exp(-np.clip(raw_scores[0, :, 0], -100, 100)))
        keep = scores >= MIN_PALM_SCORE
        if not keep.any():
            return []
        raw, scores, anchors = raw_boxes[0, keep], scores[keep], self._anchors[keep]
        # Box centre, size and 7 keypoints, as shares of the 192-px letterbox.
        centres = raw[:, 0:2] / PALM_INPUT_SIZE + anchors
        sizes = raw[:, 2:4] / PALM_INPUT_SIZE
        keypoints = raw[:, 4:18].reshape(-1, 7, 2) / PALM_INPUT_SIZE + anchors[:, None, :]
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
        regions = []
        for box, points, score in weighted_nms(boxes, keypoints, scores):
            # Letterbox shares -> pixels of the image: the letterbox is the image's longer side, centred.
            to_px = np.array([side, side], dtype=np.float64)
            offset = np.array([(side - width) / 2, (side - height) / 2])
            box_px = box.reshape(2, 2) * to_px - offset
            points_px = points * to_px - offset
            regions.append((*region_from_palm(box_px, points_px, width, height), float(score)))
        return regions


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray):
    """MediaPipe's weighted non-maximum suppression: the most confident box takes every box overlapping it
    by IoU above 0.3, and their score-weighted average location; its own score. Yields (box, points, score)."""
    order = list(np.argsort(-scores, kind="stable"))
    while order:
        top = order[0]
        ious = iou(boxes[top], boxes[order])
        group = [i for i, iou in zip(order, ious) if iou > NMS_OVERLAP]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        points = (keypoints[group] * weights[:, :, None]).sum(0) / weights.sum()
        yield box, points, scores[top]
        order = [i for i, iou in zip(order, ious) if iou <= NMS_OVERLAP]

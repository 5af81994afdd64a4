"""Overlap metrics for boolean masks, for numpy arrays and torch tensors.

All functions take a prediction and a ground truth of the same shape, (H, W) or
(N, H, W), and score each image over its last two axes. Conventions for empty
masks: when both masks are empty every metric is 1.0 (nothing to find, nothing
wrongly found); otherwise a ratio with a zero denominator is 0.0 (e.g. no
predicted pixels but some true ones: precision 0.0, recall 0.0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

METRIC_NAMES = ("dice", "iou", "precision", "recall")


@dataclass(frozen=True)
class Scores:
    dice: float
    iou: float
    precision: float
    recall: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def confusion(pred: Any, truth: Any) -> tuple[Any, Any, Any]:
    """True positives, false positives, false negatives per image (over the last two axes)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and truth {tuple(truth.shape)} differ in shape")
    if isinstance(pred, torch.Tensor):
        pred, truth = pred.bool(), truth.bool()
        dims = (-2, -1)
        count = lambda m: m.sum(dim=dims, dtype=torch.float64)  # noqa: E731
    else:
        pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
        count = lambda m: m.sum(axis=(-2, -1), dtype=np.float64)  # noqa: E731
    return count(pred & truth), count(pred & ~truth), count(~pred & truth)


def _ratio(num: Any, den: Any, both_empty: Any) -> Any:
    """num/den, 1.0 where both masks are empty, 0.0 where den is otherwise 0."""
    if isinstance(num, torch.Tensor):
        out = torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))
        return torch.where(both_empty, torch.ones_like(out), out)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.where(both_empty, 1.0, out)


def dice(pred: Any, truth: Any) -> Any:
    """2|P∩T| / (|P| + |T|)."""
    tp, fp, fn = confusion(pred, truth)
    return _ratio(2 * tp, 2 * tp + fp + fn, (tp + fp + fn) == 0)


def iou(pred: Any, truth: Any) -> Any:
    """|P∩T| / |P∪T|."""
    tp, fp, fn = confusion(pred, truth)
    return _ratio(tp, tp + fp + fn, (tp + fp + fn) == 0)


def precision(pred: Any, truth: Any) -> Any:
    """|P∩T| / |P|."""
    tp, fp, fn = confusion(pred, truth)
    return _ratio(tp, tp + fp, (tp + fp + fn) == 0)


def recall(pred: Any, truth: Any) -> Any:
    """|P∩T| / |T|."""
    tp, fp, fn = confusion(pred, truth)
    return _ratio(tp, tp + fn, (tp + fp + fn) == 0)


def score(pred: Any, truth: Any) -> Scores:
    """All four metrics for one image (H, W)."""
    if pred.ndim != 2:
        raise ValueError(f"score() takes one (H, W) mask, got shape {tuple(pred.shape)}")
    return Scores(*(float(f(pred, truth)) for f in (dice, iou, precision, recall)))


def mean_scores(scores: Iterable[Scores | Mapping[str, float]]) -> Scores:
    """Per-image scores averaged over images (each image counts once, whatever its size)."""
    rows = [s.as_dict() if isinstance(s, Scores) else s for s in scores]
    if not rows:
        raise ValueError("no scores to average")
    return Scores(*(float(np.mean([r[name] for r in rows])) for name in METRIC_NAMES))

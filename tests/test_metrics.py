"""Metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handseg import metrics

# 4x4 masks: prediction has 6 pixels, truth 4, overlap 3 -> TP 3, FP 3, FN 1.
PRED = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], bool)
TRUTH = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], bool)


def test_hand_computed_values():
    s = metrics.score(PRED, TRUTH)
    assert s.dice == pytest.approx(2 * 3 / (6 + 4))
    assert s.iou == pytest.approx(3 / 7)
    assert s.precision == pytest.approx(3 / 6)
    assert s.recall == pytest.approx(3 / 4)


def test_torch_matches_numpy_and_batches():
    batch_pred = torch.from_numpy(np.stack([PRED, TRUTH, PRED]))
    batch_truth = torch.from_numpy(np.stack([TRUTH, TRUTH, np.zeros_like(TRUTH)]))
    d = metrics.dice(batch_pred, batch_truth)
    assert isinstance(d, torch.Tensor)
    assert d.tolist() == pytest.approx([0.6, 1.0, 0.0])
    assert metrics.iou(batch_pred, batch_truth).tolist() == pytest.approx([3 / 7, 1.0, 0.0])


def test_empty_masks():
    empty = np.zeros((5, 5), bool)
    assert metrics.score(empty, empty) == metrics.Scores(1.0, 1.0, 1.0, 1.0)
    missed = metrics.score(np.zeros_like(TRUTH), TRUTH)
    assert missed == metrics.Scores(0.0, 0.0, 0.0, 0.0)
    ghost = metrics.score(PRED, np.zeros_like(PRED))
    assert (ghost.dice, ghost.precision, ghost.recall) == (0.0, 0.0, 0.0)


def test_mean_counts_each_image_once():
    a = metrics.Scores(1.0, 1.0, 1.0, 1.0)
    b = metrics.Scores(0.5, 0.25, 0.5, 0.5)
    assert metrics.mean_scores([a, b]) == metrics.Scores(0.75, 0.625, 0.75, 0.75)
    assert metrics.mean_scores([a.as_dict(), b.as_dict()]) == metrics.Scores(0.75, 0.625, 0.75, 0.75)
    with pytest.raises(ValueError):
        metrics.mean_scores([])


def test_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.dice(PRED, TRUTH[:3])

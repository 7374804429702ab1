"""The confusion matrix and its scores against direct NumPy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pairforge.train.metrics.confusion import IGNORE, Confusion, scores


def _numpy_matrix(pred: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    matrix = np.zeros((n, n), np.int64)
    for t, p in zip(target.ravel(), pred.ravel(), strict=True):
        if t != IGNORE:
            matrix[t, p] += 1
    return matrix


def test_matrix_equals_numpy_and_skips_ignore():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 5, size=(2, 17, 13)).astype(np.uint8)
    target[0, :3] = IGNORE
    pred = rng.integers(0, 5, size=target.shape)
    confusion = Confusion(5)
    confusion.update(torch.from_numpy(pred[:1]), torch.from_numpy(target[:1]))
    confusion.update(torch.from_numpy(pred[1:]), torch.from_numpy(target[1:]))
    expected = _numpy_matrix(pred, target, 5)
    assert (confusion.matrix() == expected).all()
    assert confusion.matrix().sum() == (target != IGNORE).sum()


def test_perfect_prediction_scores_one():
    target = np.array([[0, 1, 2], [2, 1, IGNORE]], np.uint8)
    confusion = Confusion(4)
    confusion.update(torch.from_numpy(np.where(target == IGNORE, 3, target)), torch.from_numpy(target))
    result = scores(confusion.matrix())
    assert result["pixel_acc"] == result["class_acc"] == result["class_iou"] == 1.0
    assert result["per_class_acc"][3] is None  # class 3 neither in labels nor predicted
    assert result["pixels"] == 5


def test_one_constant_class_gives_the_known_values():
    rng = np.random.default_rng(2)
    target = rng.choice(np.array([0, 1, 2, IGNORE], np.uint8), size=(40, 30))
    confusion = Confusion(3)
    confusion.update(torch.zeros(target.shape, dtype=torch.long), torch.from_numpy(target))
    result = scores(confusion.matrix())
    counts = np.array([(target == c).sum() for c in range(3)])
    share = counts[0] / counts.sum()
    assert result["pixel_acc"] == pytest.approx(share)
    assert result["class_acc"] == pytest.approx(1 / 3)  # class 0 all right, classes 1 and 2 all wrong
    assert result["class_iou"] == pytest.approx(share / 3)  # IoU of class 0 = n0 / all, the others 0
    assert result["per_class_iou"] == pytest.approx([share, 0.0, 0.0])

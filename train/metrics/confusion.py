"""A confusion matrix accumulated on the device, and the FCN-score metrics computed from it.

Rows are ground-truth classes, columns predicted ones; pixels whose label is `ignore` (255) are skipped.
The scores follow the FCN / pix2pix `score.py`: per-pixel accuracy = trace / total; per-class accuracy =
diagonal / row sums and IoU = diagonal / (row + column - diagonal), each averaged over the classes where
it is defined (classes absent from both ground truth and predictions do not count).
"""

from __future__ import annotations

import numpy as np
import torch

IGNORE = 255


class Confusion:
    """num_classes x num_classes int64 counts on `device`; `update` never syncs with the host."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add integer maps of the same shape (predicted class, ground-truth class or IGNORE)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and labels {tuple(target.shape)} differ in shape")
        target = target.reshape(-1).long()
        pred = pred.reshape(-1).long()
        valid = target != IGNORE
        # ids outside [0, num_classes) in the labels would alias other cells: they are ignored like 255
        valid &= (target >= 0) & (target < self.num_classes)
        index = target * self.num_classes + pred.clamp(0, self.num_classes - 1)
        self.counts += torch.bincount(index[valid], minlength=self.num_classes**2)

    def matrix(self) -> np.ndarray:
        return self.counts.view(self.num_classes, self.num_classes).cpu().numpy()


def scores(matrix: np.ndarray) -> dict:
    """pixel_acc, class_acc (mean), class_iou (mean) and per-class accuracy and IoU (None where undefined)."""
    matrix = matrix.astype(np.float64)
    diag, gt, pred = np.diag(matrix), matrix.sum(1), matrix.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = diag / gt
        iou = diag / (gt + pred - diag)
    total = matrix.sum()
    return {
        "pixel_acc": float(diag.sum() / total) if total else None,
        "class_acc": _nanmean(acc),
        "class_iou": _nanmean(iou),
        "per_class_acc": [None if np.isnan(v) else float(v) for v in acc],
        "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
        "pixels": int(total),
    }


def _nanmean(values: np.ndarray) -> float | None:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else None

"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy.

>>> target = np.array([[0, 0, 1, 1]]); pred = np.array([[0, 1, 1, 1]])
>>> cm = confusion_matrix(pred, target, 2)
>>> cm.tolist()
[[1, 1], [0, 2]]
>>> per_class_iou(cm).round(3).tolist()
[0.5, 0.667]
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = true class, columns = predicted class."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    valid = (target >= 0) & (target < num_classes)
    index = target[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """IoU per class; NaN for a class absent from both target and prediction."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: np.ndarray, ignore_background: bool = False) -> float:
    """Mean of the defined per-class IoUs (optionally without class 0)."""
    ious = per_class_iou(cm)
    if ignore_background:
        ious = ious[1:]
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")


def pixel_accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def most_confused_with(cm: np.ndarray, class_id: int) -> int | None:
    """The class that pixels of ``class_id`` are most often predicted as (other than itself)."""
    row = cm[class_id].copy()
    row[class_id] = 0
    return int(np.argmax(row)) if row.sum() else None

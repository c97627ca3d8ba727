"""Segmentation scores from one confusion matrix accumulated over a whole dataset.

Every prediction updates a single ``ConfusionMatrix`` (rows = truth, columns = prediction) and the
scores are computed once at the end. Scores are never computed per batch and then averaged: that
gives each batch (and so each small image or the short last batch) the same weight whatever its
pixel count, lets a class missing from one batch count as 0 or 1 there, and makes the number depend
on the batch size - so a per-batch mIoU (what the seed notebook reported) cannot be compared with
published results, which all use the dataset-level matrix as here.

Conventions:

* IoU = TP / (TP + FP + FN); a class absent from both truth and prediction has no IoU (None) and
  is left out of the mean, rather than counted as 0 or 1.
* Precision is undefined (None) for a class never predicted, recall for a class absent from truth.
* ``precision`` / ``recall`` are weighted by each class's true pixel count, like scikit-learn's
  ``average="weighted"`` (what the seed paper reports); as in scikit-learn an undefined precision
  counts as 0 there. Weighted recall therefore equals pixel accuracy. ``macro_precision`` /
  ``macro_recall`` are plain means over the classes where they are defined.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

IGNORE_INDEX = 255


class ConfusionMatrix:
    """Pixel counts ``matrix[truth, prediction]`` accumulated over any number of updates."""

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred, target) -> "ConfusionMatrix":
        """Add a batch of class-index predictions and targets (same shape, torch or numpy).

        Pixels whose target is ``ignore_index`` are skipped. Torch tensors are counted on their
        own device (no copy of the whole batch to the CPU), numpy arrays with numpy.
        """
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        if isinstance(pred, torch.Tensor) or isinstance(target, torch.Tensor):
            counts = self._count_torch(torch.as_tensor(pred), torch.as_tensor(target))
        else:
            counts = self._count_numpy(np.asarray(pred), np.asarray(target))
        self.matrix += counts.reshape(self.num_classes, self.num_classes)
        return self

    def _count_numpy(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        pred, target = pred.ravel().astype(np.int64), target.ravel().astype(np.int64)
        keep = target != self.ignore_index if self.ignore_index is not None else slice(None)
        pred, target = pred[keep], target[keep]
        self._check_range(pred, target)
        n = self.num_classes
        return np.bincount(n * target + pred, minlength=n * n)

    def _count_torch(self, pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        target = target.to(pred.device)
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        self._check_range(pred, target)
        n = self.num_classes
        return torch.bincount(n * target + pred, minlength=n * n).cpu().numpy()

    def _check_range(self, pred, target) -> None:
        # An out-of-range value would land in another class's cell: fail loudly instead.
        for name, values in (("prediction", pred), ("target", target)):
            if len(values) and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(
                    f"{name} holds values outside 0..{self.num_classes - 1}"
                    + (f" (and not ignore_index {self.ignore_index})" if name == "target" else "")
                )

    def reset(self) -> None:
        self.matrix[:] = 0

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts (e.g. from another worker or shard)."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError("can only merge confusion matrices with the same classes and ignore_index")
        self.matrix += other.matrix
        return self

    def compute(self, class_names: Sequence[str] | None = None) -> dict:
        return compute_metrics(self.matrix, class_names)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.matrix.sum())})"


def _per_class(values: np.ndarray, defined: np.ndarray, names: list[str]) -> dict:
    return {name: float(v) if ok else None for name, v, ok in zip(names, values, defined)}


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    defined = denominator > 0
    ratio = np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=defined)
    return ratio, defined


def _mean_defined(values: np.ndarray, defined: np.ndarray) -> float | None:
    return float(values[defined].mean()) if defined.any() else None


def compute_metrics(matrix: np.ndarray, class_names: Sequence[str] | None = None) -> dict:
    """IoU, precision, recall and accuracy from a ``[truth, prediction]`` confusion matrix."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = matrix.shape[0]
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix must be square, got shape {matrix.shape}")
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for a {n}-class confusion matrix")

    true_positive = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)  # true pixels per class
    predicted = matrix.sum(axis=0).astype(np.float64)
    total = float(matrix.sum())

    iou, iou_defined = _safe_ratio(true_positive, support + predicted - true_positive)
    precision, precision_defined = _safe_ratio(true_positive, predicted)
    recall, recall_defined = _safe_ratio(true_positive, support)

    def weighted(values: np.ndarray) -> float | None:
        # Undefined entries are 0 in `values`, which is scikit-learn's zero_division behaviour.
        return float((values * support).sum() / total) if total else None

    return {
        "per_class_iou": _per_class(iou, iou_defined, names),
        "miou": _mean_defined(iou, iou_defined),
        "pixel_accuracy": float(true_positive.sum() / total) if total else None,
        "per_class_precision": _per_class(precision, precision_defined, names),
        "per_class_recall": _per_class(recall, recall_defined, names),
        "precision": weighted(precision),
        "recall": weighted(recall),
        "macro_precision": _mean_defined(precision, precision_defined),
        "macro_recall": _mean_defined(recall, recall_defined),
        "num_pixels": int(total),
        "confusion_matrix": matrix.tolist(),
    }


# ----------------------------------------------------------------------------- uncertainty

def ious_of_stack(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU of each matrix in a ``B x C x C`` stack, and where it is defined (``B x C``)."""
    matrices = np.asarray(matrices, dtype=np.float64)
    tp = np.diagonal(matrices, axis1=1, axis2=2)
    union = matrices.sum(axis=2) + matrices.sum(axis=1) - tp
    defined = union > 0
    return np.divide(tp, union, out=np.zeros_like(tp), where=defined), defined


def miou_of_stack(matrices: np.ndarray) -> np.ndarray:
    """mIoU of each matrix in a ``B x C x C`` stack (NaN where no class is defined), as ``compute_metrics``."""
    iou, defined = ious_of_stack(matrices)
    counts = defined.sum(axis=1)
    return np.divide((iou * defined).sum(axis=1), counts, out=np.full(len(iou), np.nan), where=counts > 0)


def bootstrap_miou_ci(image_matrices, *, resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of the data set's mIoU, resampling images with replacement.

    Each resample draws as many images as there are, sums their confusion matrices and takes the
    mIoU of the sum (the same statistic as the point estimate, never a mean of per-image scores).
    Seeded, so the same matrices always give the same interval. None for fewer than 2 images.
    """
    stack = np.asarray(image_matrices, dtype=np.int64)
    n = len(stack)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    flat = stack.reshape(n, -1).astype(np.float64)
    mious = np.empty(resamples)
    for start in range(0, resamples, 250):  # in chunks: a (chunk x n) weight matrix, not (resamples x n)
        stop = min(resamples, start + 250)
        picks = rng.integers(0, n, size=(stop - start, n))
        weights = np.zeros((stop - start, n))
        np.add.at(weights, (np.arange(stop - start)[:, None], picks), 1.0)
        mious[start:stop] = miou_of_stack((weights @ flat).reshape(-1, *stack.shape[1:]))
    tail = (1.0 - level) / 2 * 100
    low, high = np.nanpercentile(mious, [tail, 100 - tail])
    return float(low), float(high)

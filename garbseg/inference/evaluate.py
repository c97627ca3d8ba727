"""Scoring predictions against labels: the one evaluation loop garbseg has.

Every image's prediction is resized back to its label's full resolution (so the score is the one a
user sees, whatever the network's input size) and counted into a confusion matrix of its own. The
scores come from the sum of those matrices over the whole set (never an average of per-batch or
per-image scores); the per-image matrices are kept for per-image scores and bootstrap intervals.

``confusions`` is the loop itself, fed by anything that yields input batches with their label
masks: ``evaluate`` feeds it a data set through a predictor's preprocessing, the runtime checks
feed it preprocessed tensors they already hold.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core import distributed
from ..data import require_classes
from ..metrics import ConfusionMatrix, bootstrap_miou_ci, compute_metrics, miou_of_stack
from .processing import upsample_argmax

Logits = Callable[[torch.Tensor], torch.Tensor]  # N x 3 x S x S batch -> N x C x h x w logits


def confusions(logits_of: Logits, batches: Iterable[tuple[torch.Tensor, Sequence[np.ndarray]]],
               num_classes: int) -> list[np.ndarray]:
    """One ``C x C`` confusion matrix (truth x prediction) per image, in order."""
    out = []
    for inputs, masks in batches:
        logits = logits_of(inputs)
        for i, mask in enumerate(masks):
            cm = ConfusionMatrix(num_classes)
            cm.update(upsample_argmax(logits[i : i + 1], *mask.shape), mask)
            out.append(cm.matrix)
    return out


def image_miou(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> float | None:
    """mIoU of one photo's prediction against its labels (same size; ignore pixels left out)."""
    return compute_metrics(ConfusionMatrix(num_classes).update(prediction, truth).matrix)["miou"]


def miou_of(matrices: Sequence[np.ndarray], classes: Sequence[str]) -> float | None:
    """mIoU of the summed matrices."""
    return compute_metrics(np.sum(matrices, axis=0), classes)["miou"]


def evaluate(predictor, dataset, *, batch_size: int = 4, progress: bool = True,
             on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Confusion-matrix metrics of ``predictor`` over the whole ``dataset`` (raw images and masks).

    ``predictor`` is anything with ``classes``, ``preprocess(images)`` and ``logits(batch)`` (a
    :class:`~garbseg.inference.predictor.Predictor`). Returns ``compute_metrics`` of the summed
    matrix plus ``num_images``, ``dataset``, ``miou_ci95`` (bootstrap over images, see
    ``garbseg.metrics.bootstrap_miou_ci``), ``per_image`` (one entry per photo: ``image``, ``miou``,
    ``pixel_accuracy``, ``truth_classes``) and ``image_confusions`` (the matrices themselves, in the
    data set's order). Raises ``DatasetError`` when the data's classes are not the model's.
    """
    classes = list(predictor.classes)
    loaded = getattr(predictor, "loaded", None)
    require_classes(classes, dataset, model=loaded.name if loaded is not None else "the model")
    n = len(dataset)
    bar = tqdm(total=n, desc="eval", unit="img", disable=not progress)

    def batches():
        for start in range(0, n, batch_size):
            raws = [dataset.load_raw(i) for i in range(start, min(n, start + batch_size))]
            yield predictor.preprocess([image for image, _ in raws]), [mask for _, mask in raws]
            bar.update(len(raws))
            if on_batch:
                on_batch(min(n, start + batch_size), n)

    matrices = confusions(predictor.logits, batches(), len(classes))
    bar.close()
    total = np.sum(matrices, axis=0) if matrices else np.zeros((len(classes),) * 2, np.int64)
    ci = bootstrap_miou_ci(matrices)
    return {**compute_metrics(total, classes), "num_images": n, "dataset": dataset.name,
            "miou_ci95": list(ci) if ci else None,
            "per_image": per_image_scores(matrices, [path.name for path in dataset.image_paths], classes),
            "image_confusions": matrices}


def per_image_scores(matrices: Sequence[np.ndarray], names: Sequence[str], classes: Sequence[str]) -> list[dict]:
    """One entry per photo: its own mIoU and pixel accuracy, and the classes its labels contain."""
    if not len(matrices):
        return []
    stack = np.asarray(matrices)
    mious = miou_of_stack(stack)
    correct = np.trace(stack, axis1=1, axis2=2)
    pixels = stack.sum(axis=(1, 2))
    out = []
    for name, matrix, miou, right, total in zip(names, stack, mious, correct, pixels):
        truth = [classes[c] for c in np.flatnonzero(matrix.sum(axis=1)) if c > 0]
        out.append({"image": name, "miou": None if np.isnan(miou) else round(float(miou), 5),
                    "pixel_accuracy": round(float(right / total), 5) if total else None, "truth_classes": truth})
    return out


def evaluate_sharded(predictor, dataset, **kwargs) -> dict:
    """``evaluate`` under torchrun: each rank scores its share of the images, and the metrics come
    from the confusion matrices summed over all ranks with all_reduce (never an average of per-rank
    mIoUs). With one process it is ``evaluate`` itself. Returns the summed metrics and
    ``num_images`` over all ranks; on rank 0 also every photo's matrix, ``per_image`` and
    ``miou_ci95`` (gathered), on the other ranks those of their own share.
    """
    if distributed.world_size() == 1:
        return evaluate(predictor, dataset, **kwargs)
    share = copy.copy(dataset)
    share.samples = distributed.shard(dataset.samples)
    local = evaluate(predictor, share, **kwargs)
    classes = list(predictor.classes)
    total = distributed.all_reduce_sum(np.sum(local["image_confusions"], axis=0) if local["image_confusions"]
                                       else np.zeros((len(classes),) * 2, np.int64))
    out = {**local, **compute_metrics(total, classes), "num_images": len(dataset)}
    gathered = distributed.gather_to_main((local["image_confusions"], [e["image"] for e in local["per_image"]]))
    if gathered is not None:  # rank 0: every photo's matrix, for the interval and the per-photo scores
        matrices = [m for part, _ in gathered for m in part]
        names = [name for _, part in gathered for name in part]
        ci = bootstrap_miou_ci(matrices)
        out.update(image_confusions=matrices, miou_ci95=list(ci) if ci else None,
                   per_image=per_image_scores(matrices, names, classes))
    return out

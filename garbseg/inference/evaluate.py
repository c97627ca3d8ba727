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
from ..metrics import ConfusionMatrix, compute_metrics
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


def miou_of(matrices: Sequence[np.ndarray], classes: Sequence[str]) -> float | None:
    """mIoU of the summed matrices."""
    return compute_metrics(np.sum(matrices, axis=0), classes)["miou"]


def evaluate(predictor, dataset, *, batch_size: int = 4, progress: bool = True,
             on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Confusion-matrix metrics of ``predictor`` over the whole ``dataset`` (raw images and masks).

    ``predictor`` is anything with ``classes``, ``preprocess(images)`` and ``logits(batch)`` (a
    :class:`~garbseg.inference.predictor.Predictor`). Returns ``compute_metrics`` of the summed
    matrix plus ``num_images``, ``dataset`` and ``image_confusions`` (one matrix per image, in the
    data set's order) and ``image_names``. Raises ``DatasetError`` when the data's classes are not
    the model's.
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
    return {**compute_metrics(total, classes), "num_images": n, "dataset": dataset.name,
            "image_confusions": matrices, "image_names": [path.name for path in dataset.image_paths]}


def evaluate_sharded(predictor, dataset, **kwargs) -> dict:
    """``evaluate`` under torchrun: each rank scores its share of the images, and the metrics come
    from the confusion matrices summed over all ranks with all_reduce (never an average of per-rank
    mIoUs). With one process it is ``evaluate`` itself. Returns the summed metrics and
    ``num_images`` over all ranks; ``image_confusions`` / ``image_names`` are this rank's only.
    """
    if distributed.world_size() == 1:
        return evaluate(predictor, dataset, **kwargs)
    share = copy.copy(dataset)
    share.samples = distributed.shard(dataset.samples)
    local = evaluate(predictor, share, **kwargs)
    classes = list(predictor.classes)
    total = distributed.all_reduce_sum(np.sum(local["image_confusions"], axis=0) if local["image_confusions"]
                                       else np.zeros((len(classes),) * 2, np.int64))
    return {**local, **compute_metrics(total, classes), "num_images": len(dataset)}

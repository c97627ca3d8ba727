"""The Lovász-softmax loss (Berman, Triki and Blaschko 2018, "The Lovász-Softmax loss: a tractable
surrogate for the optimization of the intersection-over-union measure in neural networks").

Cross-entropy rewards every pixel alike, so a class that covers few pixels (metal, glass) can be
over- or under-predicted at little cost to the loss but at a large one to its IoU, and mIoU weighs
each class equally. The Lovász extension of a class's Jaccard loss (1 - IoU) is a convex, piecewise
linear function of the per-pixel errors that equals 1 - IoU wherever the probabilities are a hard 0/1
prediction: sort the errors, and each pixel's weight is how much it adds to 1 - IoU when the pixels
erring more are already counted wrong. The loss is its mean over the classes present in the labels
of the batch; ignored pixels (255) take no part.
"""

from __future__ import annotations

import torch

from ..data import IGNORE_INDEX


def jaccard_weights(sorted_foreground: torch.Tensor) -> torch.Tensor:
    """Each pixel's step of 1 - IoU when pixels, in order of falling error, are counted wrong one by one.

    ``sorted_foreground`` holds 1 for the class's pixels, 0 for others, sorted by falling error.
    """
    fg = sorted_foreground.float()
    total = fg.sum()
    intersection = total - fg.cumsum(0)
    union = total + (1 - fg).cumsum(0)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean Lovász extension of 1 - IoU over the classes present in ``target`` (``N x C x H x W`` logits,
    ``N x H x W`` labels), computed over the whole batch's pixels as one set. Zero without labelled pixels."""
    probs = logits.float().softmax(1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    labels = target.reshape(-1)
    valid = labels != ignore_index
    probs, labels = probs[valid], labels[valid]
    losses = []
    for cls in labels.unique().tolist():
        foreground = labels == cls
        errors = (foreground.float() - probs[:, cls]).abs()
        errors_sorted, order = errors.sort(descending=True)
        losses.append(errors_sorted @ jaccard_weights(foreground[order]))
    if not losses:
        return logits.sum() * 0.0  # keeps the graph (and its device) for a batch of ignored pixels only
    return torch.stack(losses).mean()

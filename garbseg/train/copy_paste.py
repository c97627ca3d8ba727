"""Copy-paste augmentation (Ghiasi et al. 2021, "Simple copy-paste is a strong data augmentation
method for instance segmentation"), on whole augmented batches.

Each chosen photo receives the labelled objects of another photo of the batch, pasted at the same
place: the donor's object pixels (neither background nor ignored) replace the photo's pixels and
labels. The batch was augmented per photo before, so the pasted object arrives already zoomed,
turned and shifted. Objects from the plain backgrounds of TrashNet land on real garbage scenes and
the other way round, which teaches the model that a class is the object, not its surroundings.
"""

from __future__ import annotations

import torch

from ..data import IGNORE_INDEX


def copy_paste(images: torch.Tensor, masks: torch.Tensor, probability: float,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``N x 3 x H x W`` images and ``N x H x W`` masks with donors' objects pasted into a random
    ``probability`` share of them (donor: another photo of the batch, drawn at random)."""
    n = len(images)
    if n < 2 or probability <= 0:
        return images, masks
    chosen = torch.rand(n, generator=generator) < probability
    # A random derangement: shift a permutation by one, so nobody is its own donor.
    perm = torch.randperm(n, generator=generator)
    donors = torch.empty_like(perm)
    donors[perm] = perm.roll(1)
    donors = donors.to(masks.device)
    donor_masks = masks[donors]
    paste = (donor_masks != 0) & (donor_masks != IGNORE_INDEX) & chosen.to(masks.device)[:, None, None]
    images = torch.where(paste[:, None], images[donors], images)
    masks = torch.where(paste, donor_masks, masks)
    return images, masks

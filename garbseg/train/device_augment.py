"""Paired augmentation on whole batches where the model runs, for training on a GPU.

A GPU trains the small models here in a fraction of a second per epoch, far faster than two CPU
cores can decode, warp and normalise images one by one. ``DeviceTrainSet`` therefore decodes the
split once, keeps every image and mask as ``uint8`` tensors on the device, and draws each batch with
one random affine warp per sample (zoom, rotation, shift, horizontal flip) applied by
``grid_sample``: bilinear for the image, nearest for the mask, so labels stay aligned with pixels.
Colour jitter (brightness, contrast, saturation) follows, then ImageNet normalisation.

The geometry mirrors :class:`garbseg.data.TrainTransform` and inference: the unwarped view is the
whole photo squashed to ``size x size``, exactly what the predictor feeds the network; ``scale > 1``
zooms in (a random crop), ``scale < 1`` zooms out. Pixels warped in from outside the photo are
black in the image and ``IGNORE_INDEX`` in the mask, so they never count as background.

Random draws come from a CPU generator, so a seed gives the same batches on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, SegmentationDataset
from .mixing import MixedTrainSet


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random warp and colour changes (the names of :class:`TrainTransform`)."""

    size: int = 224
    hflip: float = 0.5
    rotation: float = 15.0  # degrees, uniform in [-rotation, rotation]
    scale: tuple[float, float] = (0.8, 1.2)  # zoom, log-uniform; > 1 zooms in
    translate: float = 0.1  # shift as a fraction of the image side, on top of where a zoom may go
    color_jitter: float = 0.2  # brightness, contrast and saturation factors in [1 - j, 1 + j]


class DeviceTrainSet:
    """A whole training split as device tensors, served as augmented, normalised batches."""

    def __init__(self, dataset: SegmentationDataset | MixedTrainSet, params: AugmentParams, *,
                 device: str | torch.device, store_side: int):
        """Decode ``dataset`` once; every pair is stored squashed to ``store_side`` square.

        ``store_side`` should exceed ``params.size`` by the largest zoom, so zoomed-in crops keep
        their detail (the photo itself is resized to ``size`` only at inference).
        """
        self.params = params
        self.device = torch.device(device)
        images, masks = [], []
        for image, mask in dataset.iter_raw():
            images.append(np.asarray(image.resize((store_side, store_side), Image.Resampling.BILINEAR)))
            masks.append(np.asarray(Image.fromarray(mask).resize((store_side, store_side),
                                                                 Image.Resampling.NEAREST)))
        if not images:
            raise ValueError(f"{dataset.name}: no training images")
        self.images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.masks = torch.from_numpy(np.stack(masks)).to(self.device)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int, generator: torch.Generator, *, drop_last: bool = True,
                order: torch.Tensor | None = None, rank: int = 0, world_size: int = 1,
                augment_generator: torch.Generator | None = None):
        """One epoch: ``(images, masks)`` batches in ``order`` (default: a random order of every stored
        pair drawn from ``generator``).

        Under torchrun every rank draws the same order (same ``generator`` seed) and augments its own
        slice ``[rank::world_size]`` of each ``batch_size`` (global) batch, with its own
        ``augment_generator`` so that ranks do not repeat one another's warps.
        """
        order = torch.randperm(len(self), generator=generator) if order is None else order
        augment_generator = augment_generator or generator
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size][rank::world_size]
            yield self.augment(index, augment_generator)

    def augment(self, index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Warped, jittered and normalised ``N x 3 x size x size`` images with their masks."""
        n, p = len(index), self.params
        theta = random_affine(n, p, generator).to(self.device)
        grid = F.affine_grid(theta, [n, 3, p.size, p.size], align_corners=False)
        idx = index.to(self.device)
        images = F.grid_sample(self.images[idx].float(), grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)
        # Masks shifted by one so that zero padding marks "outside the photo", then ignored.
        shifted = (self.masks[idx].float() + 1).unsqueeze(1)
        masks = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        masks = masks.squeeze(1).long() - 1
        masks[masks < 0] = IGNORE_INDEX
        images = color_jitter(images / 255.0, p.color_jitter, generator)
        return (images - self.mean) / self.std, masks


def random_affine(n: int, p: AugmentParams, generator: torch.Generator) -> torch.Tensor:
    """``n x 2 x 3`` matrices mapping output to input coordinates (``affine_grid``'s convention)."""
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    lo, hi = p.scale
    zoom = torch.exp(uniform(math.log(lo), math.log(hi)))
    angle = uniform(-p.rotation, p.rotation) * math.pi / 180
    flip = torch.where(torch.rand(n, generator=generator) < p.hflip, -1.0, 1.0)
    # A zoomed-in view may sit anywhere inside the photo, plus the free shift; coordinates are [-1, 1].
    reach = (1 - 1 / zoom).clamp(min=0) + 2 * p.translate
    shift = torch.stack([uniform(-1, 1) * reach, uniform(-1, 1) * reach], dim=1)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
    theta[:, :, 2] = shift
    return theta


def color_jitter(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per-image brightness, contrast and saturation factors in ``[1 - strength, 1 + strength]``."""
    if strength <= 0:
        return images
    n = images.shape[0]

    def factors() -> torch.Tensor:
        f = 1 + strength * (2 * torch.rand(n, generator=generator) - 1)
        return f.to(images.device).view(n, 1, 1, 1)

    images = images * factors()  # brightness
    mean_grey = _grey(images).mean(dim=(2, 3), keepdim=True)
    images = mean_grey + (images - mean_grey) * factors()  # contrast
    grey = _grey(images)
    images = grey + (images - grey) * factors()  # saturation
    return images.clamp(0, 1)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """``N x 1 x H x W`` luma (ITU-R 601 weights) of ``N x 3 x H x W`` RGB."""
    return 0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3]

"""Paired image/mask transforms: resize + normalise for evaluation, random augmentation for training."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from .images import _to_rgb


def _as_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """int -> square (h, w); (h, w) as given; None -> keep the input size."""
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


def _image_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """uint8 3xHxW tensor from a PIL image or an HxWx3 uint8 array."""
    if isinstance(image, Image.Image):
        return TF.pil_to_tensor(_to_rgb(image))
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def _mask_tensor(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.array(mask, dtype=np.uint8, copy=True)).unsqueeze(0)


def _normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    return TF.normalize(image.float().div_(255.0), list(mean), list(std))


def _resize_image(image: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is None or tuple(image.shape[-2:]) == size:
        return image
    return TF.resize(image, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)


def _resize_mask(mask: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is None or tuple(mask.shape[-2:]) == size:
        return mask
    # NEAREST_EXACT samples pixel centres like bilinear does; plain NEAREST shifts by half a pixel.
    return TF.resize(mask, list(size), interpolation=InterpolationMode.NEAREST_EXACT)


def normalize_image(
    image: Image.Image | np.ndarray,
    size: int | Sequence[int] | None = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Resize (int = square, (h, w), None = keep) and normalise to a float 3xHxW tensor."""
    return _normalize(_resize_image(_image_tensor(image), _as_size(size)), mean, std)


class EvalTransform:
    """Resize image (bilinear) and mask (nearest) to ``size`` and normalise; no randomness."""

    def __init__(self, size: int | Sequence[int] | None = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size, self.mean, self.std = _as_size(size), tuple(mean), tuple(std)

    def __call__(self, image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        tensor = normalize_image(image, self.size, self.mean, self.std)
        labels = _resize_mask(_mask_tensor(mask), tuple(tensor.shape[-2:]))
        return tensor, labels[0].long()

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, mean={self.mean}, std={self.std})"


def _uniform(low: float, high: float) -> float:
    # Drawn from torch's RNG so torch.manual_seed and DataLoader worker seeding cover it.
    return low + (high - low) * float(torch.rand(()))


def _coin(probability: float) -> bool:
    return float(torch.rand(())) < probability


class TrainTransform:
    """Random augmentation applied identically to image and mask.

    Square resize to ``resize``, random affine (rotation in degrees, scale range, translation as a
    fraction of the side; image bilinear filled with 0, mask nearest filled with IGNORE_INDEX so
    uncovered areas are not scored), random ``size`` crop, flips, colour jitter on the image only
    (brightness/contrast/saturation factors in [1 - c, 1 + c]), then normalisation.
    """

    def __init__(
        self,
        size: int = 224,
        resize: int = 256,
        hflip: float = 0.5,
        vflip: float = 0.0,
        rotation: float = 15.0,
        scale: tuple[float, float] = (0.8, 1.2),
        translate: float = 0.1,
        color_jitter: float = 0.2,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        if size > resize:
            raise ValueError(f"crop size {size} is larger than the resize {resize}")
        if not (0 < scale[0] <= scale[1]):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        for name, p in (("hflip", hflip), ("vflip", vflip)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability, got {p}")
        self.size, self.resize = size, resize
        self.hflip, self.vflip = hflip, vflip
        self.rotation, self.scale, self.translate = rotation, tuple(scale), translate
        self.color_jitter = color_jitter
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        side = (self.resize, self.resize)
        img = _resize_image(_image_tensor(image), side)
        labels = _resize_mask(_mask_tensor(mask), side)
        img, labels = self._random_affine(img, labels)
        img, labels = self._random_crop(img, labels)
        if _coin(self.hflip):
            img, labels = TF.horizontal_flip(img), TF.horizontal_flip(labels)
        if _coin(self.vflip):
            img, labels = TF.vertical_flip(img), TF.vertical_flip(labels)
        img = self._jitter(img)
        return _normalize(img, self.mean, self.std), labels[0].long()

    def _random_affine(self, img: torch.Tensor, labels: torch.Tensor):
        if self.rotation == 0 and self.scale == (1.0, 1.0) and self.translate == 0:
            return img, labels
        height, width = img.shape[-2:]
        params = dict(
            angle=_uniform(-self.rotation, self.rotation),
            translate=[_uniform(-self.translate, self.translate) * width,
                       _uniform(-self.translate, self.translate) * height],
            scale=_uniform(*self.scale),
            shear=[0.0, 0.0],
        )
        # One parameter set for both: the same sampling grid keeps them pixel-aligned.
        img = TF.affine(img, **params, interpolation=InterpolationMode.BILINEAR, fill=0)
        labels = TF.affine(labels, **params, interpolation=InterpolationMode.NEAREST, fill=IGNORE_INDEX)
        return img, labels

    def _random_crop(self, img: torch.Tensor, labels: torch.Tensor):
        height, width = img.shape[-2:]
        top = int(torch.randint(0, height - self.size + 1, ()))
        left = int(torch.randint(0, width - self.size + 1, ()))
        crop = dict(top=top, left=left, height=self.size, width=self.size)
        return TF.crop(img, **crop), TF.crop(labels, **crop)

    def _jitter(self, img: torch.Tensor) -> torch.Tensor:
        if self.color_jitter <= 0:
            return img
        low, high = max(0.0, 1 - self.color_jitter), 1 + self.color_jitter
        img = TF.adjust_brightness(img, _uniform(low, high))
        img = TF.adjust_contrast(img, _uniform(low, high))
        return TF.adjust_saturation(img, _uniform(low, high))

    def __repr__(self) -> str:
        return (
            f"TrainTransform(size={self.size}, resize={self.resize}, hflip={self.hflip}, "
            f"vflip={self.vflip}, rotation={self.rotation}, scale={self.scale}, "
            f"translate={self.translate}, color_jitter={self.color_jitter})"
        )

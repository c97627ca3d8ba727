"""Inference: image in, class-id mask out, with preprocessing taken from the checkpoint metadata.

``Predictor`` wraps a loaded model; ``predict(image)`` accepts a PIL image of any size, mode and
EXIF orientation (or a path/bytes) and returns an ``H x W`` ``uint8`` array of class ids at the
image's own size. Preprocessing (square resize to the training input size, ImageNet normalisation)
is timed separately from the network so that benchmarks can report both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoints import LoadedModel, load_checkpoint
from .data import load_image, normalize_image


@dataclass
class Timing:
    """Milliseconds spent in each stage of the last call."""

    preprocess_ms: float = 0.0
    model_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.model_ms + self.postprocess_ms


@dataclass
class Predictor:
    """A model plus the preprocessing its checkpoint asks for."""

    loaded: LoadedModel
    input_size: int | None = None  # None: the size the model was trained at
    last_timing: Timing = field(default_factory=Timing)

    def __post_init__(self) -> None:
        self.loaded.model.eval()
        meta = self.loaded.meta
        self.size = int(self.input_size or meta.get("input_size", 224))
        self.mean = tuple(meta["normalization"]["mean"])
        self.std = tuple(meta["normalization"]["std"])

    @classmethod
    def from_checkpoint(cls, ref, input_size: int | None = None) -> "Predictor":
        return cls(load_checkpoint(ref), input_size)

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """A normalised ``N x 3 x size x size`` batch."""
        return torch.stack([normalize_image(im, self.size, self.mean, self.std) for im in images])

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.loaded.model(batch)["out"]

    def predict_batch(self, images: Iterable) -> list[np.ndarray]:
        """Class-id masks, one per image, each at its image's own size."""
        t0 = time.perf_counter()
        pil = [im if isinstance(im, Image.Image) and im.mode == "RGB" else load_image(im) for im in images]
        batch = self.preprocess(pil)
        t1 = time.perf_counter()
        out = self.logits(batch)
        t2 = time.perf_counter()
        masks = [upsample_argmax(out[i : i + 1], im.height, im.width) for i, im in enumerate(pil)]
        t3 = time.perf_counter()
        self.last_timing = Timing((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return masks

    def predict(self, image) -> np.ndarray:
        """The class-id mask (``H x W`` uint8) of one image."""
        return self.predict_batch([image])[0]


def upsample_argmax(logits: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Argmax of ``1 x C x h x w`` logits after bilinear resize to ``height x width``."""
    if logits.shape[-2:] != (height, width):
        logits = F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=False)
    return logits[0].argmax(0).to(torch.uint8).cpu().numpy()


def predict(model: LoadedModel | Predictor, image) -> np.ndarray:
    """Shortcut: ``H x W`` class ids for one image."""
    predictor = model if isinstance(model, Predictor) else Predictor(model)
    return predictor.predict(image)

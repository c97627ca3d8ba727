"""Inference: image in, class-id mask out, with preprocessing taken from the checkpoint metadata.

``Predictor`` wraps a loaded model; ``predict(image)`` accepts a PIL image of any size, mode and
EXIF orientation (or a path/bytes) and returns an ``H x W`` ``uint8`` array of class ids at the
image's own size. Preprocessing (square resize to the training input size, ImageNet normalisation)
is timed separately from the network so that benchmarks can report both.

The network itself runs on a *runtime* (:mod:`garbseg.inference.runtimes`): ``torch`` (eager, the
default here), ``torch-opt``, ``onnx``, ``openvino``, their int8 variants, or ``auto`` (the fastest
one that agrees with eager on this machine). Pre- and post-processing
(:mod:`garbseg.inference.processing`) are shared by all runtimes. ``flip=True`` averages each photo's
class probabilities with its mirror image's (test-time flip averaging, off by default).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ..data import load_image
from ..models import LoadedModel, load_checkpoint
from .processing import normalisation_arrays, prepare_image, upsample_argmax
from .runtimes import build_engine


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
    """A model plus the preprocessing its checkpoint asks for, running on one runtime."""

    loaded: LoadedModel
    input_size: int | None = None  # None: the size the model was trained at
    last_timing: Timing = field(default_factory=Timing)
    runtime: str = "torch"  # a name from garbseg.inference.runtimes.RUNTIMES, "auto" included
    threads: int | None = None  # threads for file-based runtimes (None: all cores)
    data_dir: str | None = None  # data set for int8 calibration and checks (None: the default one)
    log: object = None  # callable(str) for progress messages while a runtime is prepared
    calibrate: bool = True  # False: auto leaves out int8 runtimes not calibrated yet (interactive use)
    exclusive: object = None  # context manager factory held while a runtime exports (see BuildContext)
    flip: bool = False  # test-time flip averaging: the photo and its mirror image, twice the work

    def __post_init__(self) -> None:
        self.loaded.model.eval()
        meta = self.loaded.meta
        self.size = int(self.input_size or meta.input_size)
        self.mean, self.std = tuple(meta.mean), tuple(meta.std)
        self._scale, self._bias = normalisation_arrays(self.mean, self.std)
        if self.runtime == "torch":
            self.engine = None  # eager: call the model directly, nothing to build
        else:
            self.engine = build_engine(self.loaded, self.runtime, size=self.size, threads=self.threads,
                                       data_dir=self.data_dir, calibrate=self.calibrate, log=self.log,
                                       exclusive=self.exclusive)

    @classmethod
    def from_checkpoint(cls, ref, input_size: int | None = None, *, runtime: str = "torch",
                        **kwargs) -> "Predictor":
        return cls(load_checkpoint(ref), input_size, runtime=runtime, **kwargs)

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    @property
    def resolved_runtime(self) -> str:
        """The runtime that actually runs (``auto`` and fallbacks resolved)."""
        return self.engine.name if self.engine is not None else "torch"

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """A normalised ``N x 3 x size x size`` batch."""
        arrays = [prepare_image(im, self.size, scale=self._scale, bias=self._bias) for im in images]
        return torch.from_numpy(np.stack(arrays))

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """``N x C x h x w`` scores; with ``flip``, the log of the class probabilities averaged over the
        batch and its mirror image (log-probabilities, so argmax and softmax read them as logits)."""
        if not self.flip:
            return self._forward(batch)
        return self.mirror_averaged_probabilities(batch).log()

    def mirror_averaged_probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """``N x C x h x w`` float class probabilities of the batch and of its mirror image, averaged."""
        with torch.inference_mode():
            photo = self._forward(batch).float().softmax(1)
            mirror = self._forward(batch.flip(-1)).float().softmax(1).flip(-1)
            return (photo + mirror) / 2

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.engine is not None:
            return self.engine(batch)
        with torch.inference_mode():
            device = next(self.loaded.model.parameters()).device  # a model training on a GPU
            return self.loaded.model(batch.to(device))["out"]

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


class SharedPredictor:
    """A view on one :class:`Predictor` shared by several threads (app sessions, a webcam callback).

    Every call holds ``lock``, so runs never overlap (they would share the cores and each other's
    engine state); the view keeps its own ``last_timing``, so a caller reads its own call's times.
    """

    def __init__(self, predictor: Predictor, lock):
        self.predictor = predictor
        self.lock = lock
        self.last_timing = Timing()

    @property
    def loaded(self) -> LoadedModel:
        return self.predictor.loaded

    @property
    def classes(self) -> list[str]:
        return self.predictor.classes

    @property
    def resolved_runtime(self) -> str:
        return self.predictor.resolved_runtime

    def predict(self, image) -> np.ndarray:
        with self.lock:
            mask = self.predictor.predict(image)
            self.last_timing = self.predictor.last_timing
        return mask


def predict(model: LoadedModel | Predictor, image) -> np.ndarray:
    """Shortcut: ``H x W`` class ids for one image."""
    predictor = model if isinstance(model, Predictor) else Predictor(model)
    return predictor.predict(image)

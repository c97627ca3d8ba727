"""What every runtime is: a callable from a normalised ``N x 3 x S x S`` float32 batch to logits.

The logits may come at the head's own resolution (``S/8`` or ``S/16``): the compiled runtimes stop
before the network's last bilinear upsampling (``garbseg.models.registry.head_logits``), because
post-processing resizes to the photo's size anyway; resizing once instead of twice saved 10-20 %
of OpenVINO's time on the LR-ASPP MobileNets. ``torch`` (the reference) runs the model as trained.

Pre- and post-processing stay in :mod:`garbseg.inference.processing`, shared by all runtimes, so a runtime only
has to agree with the eager model on the network itself. File-based runtimes are compiled for
batch 1 at one size (what real-time use needs, and the fastest plan); larger batches run image by
image.

Each engine class describes itself (``name``, ``fallback``, ``int8``, ``packages``, ``auto``); the
registry in :mod:`.registry` is derived from those attributes, nowhere else.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch

from ...core.errors import GarbsegError
from ...models import LoadedModel


class RuntimeUnavailable(GarbsegError, RuntimeError):
    """This runtime cannot run here: a package is missing, or export/compilation failed."""


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def import_optional(package: str, needed_by: str | None = None):
    """``import package``; a missing package makes the runtime unavailable (so it can fall back)."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        who = f"{needed_by} needs {package}" if needed_by else f"{package} is not installed"
        raise RuntimeUnavailable(f"{who} ({exc})") from exc


@dataclass
class BuildContext:
    """What a runtime needs to build itself for one model."""

    loaded: LoadedModel
    size: int
    threads: int
    data_dir: Path | None = None  # labelled data set root: train images calibrate int8 runtimes
    log: Callable[[str], None] = field(default=lambda msg: None)
    # Held while torch.export traces the model: its fake-tensor mode is process-wide, and eager inference
    # in another thread during it fails. A server that prepares runtimes in the background while it
    # answers passes the lock its inference holds.
    exclusive: Callable[[], ContextManager] = field(default=nullcontext)

    @property
    def name(self) -> str:
        return self.loaded.name


class Engine:
    """Base class: ``engine(batch) -> logits`` (``torch.Tensor`` in and out, float32, CPU), ``N x C x h x w``
    with ``h = w <= S``; ``garbseg.inference.processing.upsample_argmax`` turns them into classes at any size.

    Class attributes describe the runtime to the registry: its ``name``; ``fallback``, the runtime
    to try when this one cannot run here; ``int8`` (a different model on purpose, accepted on a
    measured val mIoU change rather than on agreement); ``packages`` whose versions change what it
    computes (a new version invalidates cached checks); ``auto``, whether ``auto`` considers it.
    """

    name = "?"
    fallback: str | None = None
    int8 = False
    packages: tuple[str, ...] = ()
    auto = True
    # Relative cost of preparing and checking it on first use (a float export and parity check = 1):
    # weights for the time left that ``auto`` reports while it prepares its candidates.
    prepare_cost = 1.0

    @classmethod
    def recipe(cls) -> list[str]:
        """Settings beyond package versions that change what this runtime computes (cache keys)."""
        return []

    @classmethod
    def version(cls) -> str:
        parts = [f"{p} {package_version(p)}" for p in ("torch", *cls.packages)] + cls.recipe()
        return "; ".join(parts)

    def __init__(self, ctx: BuildContext):
        self.size = ctx.size
        self.threads = ctx.threads
        self.details: dict = {}  # what was built (variant, files), shown in benchmark rows

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, batch: torch.Tensor) -> None:
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (3, self.size, self.size):
            raise ValueError(f"{self.name} runtime expects N x 3 x {self.size} x {self.size}, got {tuple(batch.shape)}")


class ArrayEngine(Engine):
    """An engine whose backend takes one ``1 x 3 x S x S`` float32 numpy array at a time."""

    def run_one(self, array: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.check_input(batch)
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        outs = [self.run_one(array[i : i + 1]) for i in range(array.shape[0])]
        return torch.from_numpy(outs[0] if len(outs) == 1 else np.concatenate(outs))

"""Training on a labelled split plus an extra, larger set (e.g. pseudo-labelled TrashNet).

An epoch is every photo of the primary split once plus ``extra_ratio`` times as many photos drawn
from the extra set (a fresh random subset each epoch, without repeats inside one), shuffled together.
The ratio is the knob: 1.0 means half of each epoch's photos are extra ones. Indices below
``len(primary)`` are primary photos, the rest extra ones, so one order serves both the per-image
DataLoader path and the on-device batches.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from ..data import SegmentationDataset, require_classes
from .pseudo_labels import labelled_by


class MixedTrainSet:
    """``primary`` and an optional ``extra`` set with the same classes, seen as one index space."""

    def __init__(self, primary: SegmentationDataset, extra: SegmentationDataset | None = None,
                 extra_ratio: float = 1.0):
        if extra is not None:
            require_classes(primary.classes, extra, model=f"the training split {primary.name}")
        if extra_ratio < 0:
            raise ValueError(f"extra_ratio must be >= 0, not {extra_ratio}")
        self.primary, self.extra, self.extra_ratio = primary, extra, extra_ratio
        # Which round of self-training made the extra set's labels (None for hand-labelled data).
        self.extra_labelled_by = labelled_by(extra.root) if extra is not None else None
        self.classes = list(primary.classes)

    @property
    def name(self) -> str:
        return self.primary.name if self.extra is None else f"{self.primary.name} + {self.extra.name}"

    @property
    def layout(self) -> str:
        return self.primary.layout if self.extra is None else f"{self.primary.layout} + {self.extra.layout}"

    @property
    def extra_per_epoch(self) -> int:
        if self.extra is None:
            return 0
        return min(len(self.extra), round(len(self.primary) * self.extra_ratio))

    @property
    def epoch_size(self) -> int:
        return len(self.primary) + self.extra_per_epoch

    def __len__(self) -> int:  # every photo there is (what the device stores)
        return len(self.primary) + (len(self.extra) if self.extra is not None else 0)

    def __getitem__(self, index: int):
        if index < len(self.primary):
            return self.primary[index]
        return self.extra[index - len(self.primary)]

    def iter_raw(self) -> Iterator[tuple[Image.Image, np.ndarray]]:
        parts = [self.primary] + ([self.extra] if self.extra is not None else [])
        return itertools.chain.from_iterable(part.iter_raw() for part in parts)

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        """This epoch's shuffled indices: all primary photos, plus ``extra_per_epoch`` extra ones."""
        n = len(self.primary)
        chosen = torch.randperm(n, generator=generator)
        if self.extra_per_epoch:
            extra = torch.randperm(len(self.extra), generator=generator)[: self.extra_per_epoch] + n
            chosen = torch.cat([chosen, extra])
        return chosen[torch.randperm(len(chosen), generator=generator)]

    def describe(self) -> dict:
        """For the checkpoint's metadata and the model card."""
        record = {"name": self.name, "layout": self.layout, "train_images": len(self.primary)}
        if self.extra is not None:
            record |= {"extra_images": len(self.extra), "extra_name": self.extra.name,
                       "extra_ratio": self.extra_ratio, "extra_per_epoch": self.extra_per_epoch}
            if self.extra_labelled_by:
                record["extra_labelled_by"] = self.extra_labelled_by
        return record

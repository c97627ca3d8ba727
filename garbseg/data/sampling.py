"""Choosing a few images of a split that still show every class: a limited benchmark must not rest on
the first N photos (in a split sorted by file name those are all of one class)."""

from __future__ import annotations

import numpy as np

from .constants import IGNORE_INDEX
from .dataset import SegmentationDataset


def classes_per_image(dataset: SegmentationDataset) -> list[set[int]]:
    """The foreground classes each image's labels contain (decodes every mask once)."""
    present = []
    for i in range(len(dataset)):
        _, mask = dataset.load_raw(i)
        values = np.unique(mask)
        present.append({int(v) for v in values if 0 < v != IGNORE_INDEX})
    return present


def stratified_sample(dataset: SegmentationDataset, count: int, *, seed: int = 0) -> list[int]:
    """Indices of about ``count`` images (data set order) in which every foreground class of the
    split appears: first one image per class (rarest classes first, seeded choice among the images
    that hold it), then seeded random images up to ``count``. More than ``count`` only when the split
    has more classes than ``count``."""
    present = classes_per_image(dataset)
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(dataset))]
    holders = {c: [i for i in order if c in present[i]] for c in range(1, len(dataset.classes))}
    chosen: list[int] = []
    for c in sorted((c for c in holders if holders[c]), key=lambda c: len(holders[c])):
        if not any(c in present[i] for i in chosen):
            chosen.append(holders[c][0])
    chosen += [i for i in order if i not in chosen][: max(0, count - len(chosen))]
    return sorted(chosen)


def subset(dataset: SegmentationDataset, indices: list[int]) -> SegmentationDataset:
    """``dataset`` limited to ``indices`` (in place: the same object, fewer samples)."""
    paths = dataset.image_paths
    dataset.image_paths = [paths[i] for i in indices]
    return dataset

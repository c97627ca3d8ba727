"""`SegmentationDataset`: samples (image + where its labels live) read through a layout's mask
reader, with error policy ("raise" / "skip"), an optional in-memory cache, and class pixel counts."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .constants import IGNORE_INDEX, MAX_ERRORS_SHOWN, DatasetError
from .images import load_image


@dataclass(frozen=True)
class Sample:
    """One image and where its labels live.

    ``label`` is the file blamed in error messages (YOLO .txt, mask PNG or COCO JSON);
    ``annotations`` and ``size`` are only set for COCO (``(value, segmentation)`` pairs, (w, h)).
    """

    image: Path
    label: Path | None
    annotations: tuple = ()
    size: tuple[int, int] | None = None


MaskReader = Callable[[Sample, tuple[int, int]], np.ndarray]


class SegmentationDataset(Dataset):
    """Images with class-index masks; ``dataset[i]`` is ``transform(image, mask)``.

    With ``on_error="skip"`` a sample that fails to load is reported with ``warnings.warn`` and the
    next good sample is returned instead, so the length a DataLoader saw stays valid. Call
    ``validate()`` first (e.g. before an evaluation) to drop broken samples for good.

    ``cache=True`` keeps decoded samples in memory so JPEGs are decoded once. With DataLoader
    workers each process holds its own cache: call ``validate()`` before creating the loader (forked
    workers inherit the filled cache) or use ``persistent_workers=True``. ``cache_max_side`` shrinks
    every sample at load time (cached or not, so results never depend on cache state) so that its
    longer side is at most that many pixels: image bilinear, mask nearest.
    """

    def __init__(
        self,
        samples: Sequence[Sample],  # root: the split's folder (or the COCO file's folder)
        classes: Sequence[str],
        *,
        read_mask: MaskReader,
        name: str,
        root: Path,
        layout: str,
        transform: Callable | None = None,
        on_error: str = "raise",
        cache: bool = False,
        cache_max_side: int | None = None,
    ):
        _check_on_error(on_error)
        if cache_max_side is not None and cache_max_side < 1:
            raise ValueError(f"cache_max_side must be a positive int, got {cache_max_side}")
        self.samples = list(samples)
        self.classes = list(classes)
        self.read_mask = read_mask
        self.name = name
        self.root = Path(root)
        self.layout = layout
        self.transform = transform
        self.on_error = on_error
        self.cache_max_side = cache_max_side
        self._cache: dict[Path, tuple[Image.Image, np.ndarray]] | None = {} if cache else None
        self._broken: set[Path] = set()

    @property
    def image_paths(self) -> list[Path]:
        return [s.image for s in self.samples]

    @image_paths.setter
    def image_paths(self, paths: Sequence[str | os.PathLike]) -> None:
        """Keep only (and order by) these images, e.g. ``ds.image_paths = ds.image_paths[:10]``."""
        by_image = {s.image: s for s in self.samples}
        unknown = [str(p) for p in paths if Path(p) not in by_image]
        if unknown:
            raise ValueError(f"not images of {self.name}: {unknown[:MAX_ERRORS_SHOWN]}")
        self.samples = [by_image[Path(p)] for p in paths]

    def index_of(self, image_name: str) -> int:
        """The index of the image with this file name; ``KeyError`` when the set has none."""
        for index, sample in enumerate(self.samples):
            if sample.image.name == image_name:
                return index
        raise KeyError(f"{image_name} is not a photo of {self.name}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (
            f"SegmentationDataset(name={self.name!r}, layout={self.layout!r}, "
            f"images={len(self)}, classes={self.classes})"
        )

    def load_raw(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """The decoded RGB image and its class-index mask; raises DatasetError when broken."""
        sample = self.samples[index]
        if self._cache is not None and sample.image in self._cache:
            image, mask = self._cache[sample.image]
            return image.copy(), mask.copy()  # callers may modify what they get
        image, mask = self._decode(sample)
        if self._cache is not None:
            self._cache[sample.image] = (image, mask)
            return image.copy(), mask.copy()
        return image, mask

    def __getitem__(self, index: int):
        image, mask = self._load_or_skip(index)
        if self.transform is None:
            return image, mask
        return self.transform(image, mask)

    def validate(self) -> list[str]:
        """Load every sample once (filling the cache); returns the problems found.

        In "raise" mode the first problem raises; in "skip" mode broken samples are removed.
        """
        problems, good = [], []
        for sample, _ in self._loadable(problems):
            good.append(sample)
        self.samples = good
        return problems

    def iter_raw(self) -> Iterator[tuple[Image.Image, np.ndarray]]:
        """Yield ``load_raw`` for every sample, honouring ``on_error``."""
        for _, raw in self._loadable([]):
            yield raw

    def _loadable(self, problems: list[str]) -> Iterator[tuple[Sample, tuple[Image.Image, np.ndarray]]]:
        """``(sample, load_raw(...))`` for every sample that loads. A broken one raises in "raise" mode; in
        "skip" mode it is warned about (blaming the caller of validate / iter_raw), added to ``problems`` and
        left out."""
        for index, sample in enumerate(self.samples):
            try:
                raw = self.load_raw(index)
            except DatasetError as exc:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"skipping: {exc}", stacklevel=3)
                problems.append(str(exc))
                continue
            yield sample, raw

    def _decode(self, sample: Sample) -> tuple[Image.Image, np.ndarray]:
        image = load_image(sample.image)
        mask = self.read_mask(sample, image.size)
        _check_mask_values(mask, len(self.classes), sample.label or sample.image)
        if self.cache_max_side is not None:
            image, mask = _shrink_pair(image, mask, self.cache_max_side)
        return image, mask

    def _load_or_skip(self, index: int) -> tuple[Image.Image, np.ndarray]:
        if self.on_error == "raise":
            return self.load_raw(index)
        for step in range(len(self)):
            current = (index + step) % len(self)
            if self.samples[current].image in self._broken:
                continue
            try:
                return self.load_raw(current)
            except DatasetError as exc:
                self._broken.add(self.samples[current].image)
                warnings.warn(f"skipping: {exc}", stacklevel=3)
        raise DatasetError(f"every sample of {self.name} ({self.root}) failed to load")


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f'on_error must be "raise" or "skip", got {on_error!r}')


def _report(problems: list[str], on_error: str, where: str) -> None:
    """Raise all construction problems at once, or warn about each in skip mode."""
    if not problems:
        return
    if on_error == "raise":
        shown = "\n  ".join(problems[:MAX_ERRORS_SHOWN])
        more = len(problems) - MAX_ERRORS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise DatasetError(f"{len(problems)} problem(s) in {where}:\n  {shown}{tail}")
    for problem in problems:
        warnings.warn(f"skipping: {problem}", stacklevel=4)


def _check_mask_values(mask: np.ndarray, num_classes: int, blame: Path) -> None:
    bad = (mask >= num_classes) & (mask != IGNORE_INDEX)
    if bad.any():
        raise DatasetError(
            f"{blame}: mask value {int(mask[bad].max())} is not a class index "
            f"(0..{num_classes - 1}) nor the ignore value {IGNORE_INDEX}"
        )


def _shrink_pair(image: Image.Image, mask: np.ndarray, max_side: int):
    width, height = image.size
    if max(width, height) <= max_side:
        return image, mask
    ratio = max_side / max(width, height)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    small_mask = Image.fromarray(mask).resize(size, Image.Resampling.NEAREST)
    return image.resize(size, Image.Resampling.BILINEAR), np.array(small_mask)


def class_pixel_counts(dataset: SegmentationDataset) -> np.ndarray:
    """Pixels per class over the whole dataset (int64, ignore pixels left out)."""
    counts = np.zeros(len(dataset.classes), dtype=np.int64)
    for _, mask in dataset.iter_raw():
        values = mask[mask != IGNORE_INDEX]
        counts += np.bincount(values.ravel(), minlength=len(counts))[: len(counts)]
    return counts


def require_classes(classes: Sequence[str], dataset: SegmentationDataset, *, model: str = "the model") -> None:
    """Raise :class:`DatasetError` naming both class lists when ``dataset``'s differ from ``classes``."""
    if list(dataset.classes) != list(classes):
        raise DatasetError(f"{model} predicts the classes {list(classes)} but {dataset.name} is labelled with "
                           f"{list(dataset.classes)}; accuracy needs the same classes in the same order")

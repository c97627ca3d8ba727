"""One photo through one model: the mask, how long it took, and the picture to show.

The Segment page compares several models on the same photo; this keeps the per-model work (and its
timing, measured the same way for every model) out of the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data import SegmentationDataset
from ..inference import image_miou
from ..present.overlays import legend_rows, overlay
from .uploads import Photo, digest


@dataclass
class Segmentation:
    model: str
    trained: bool
    classes: list[str]
    mask: np.ndarray  # H x W class ids at the photo's (display) size
    total_ms: float  # preprocess + network + resize back
    model_ms: float  # the network alone
    runtime: str = "torch"  # the runtime the network ran on (auto and fallbacks resolved)

    def render(self, image: Image.Image, *, alpha: float = 0.5, style: str = "overlay") -> Image.Image:
        return overlay(image, self.mask, len(self.classes), alpha=alpha, style=style)

    def legend(self) -> list[dict]:
        return legend_rows(self.mask, self.classes)


def segment_image(predictor, image: Image.Image, *, model: str, trained: bool) -> Segmentation:
    mask = predictor.predict(image)
    timing = predictor.last_timing  # its own stages only: not the wait for another session's call
    return Segmentation(model, trained, list(predictor.classes), mask, timing.total_ms, timing.model_ms,
                        predictor.resolved_runtime)


@dataclass
class LabelledPhoto:
    """A photo of a labelled set, offered as an example: no upload needed, and its truth is known."""

    photo: Photo
    truth: np.ndarray  # H x W class ids at the photo's size (255: ignore)
    classes: list[str]

    def truth_picture(self, *, alpha: float = 0.5, style: str = "overlay") -> Image.Image:
        return overlay(self.photo.image, self.truth, len(self.classes), alpha=alpha, style=style)

    def score(self, segmentation: Segmentation) -> float | None:
        """The model's mIoU on this photo (None when its classes are not the labels')."""
        if segmentation.classes != self.classes or segmentation.mask.shape != self.truth.shape:
            return None
        return image_miou(segmentation.mask, self.truth, len(self.classes))


def labelled_photo(dataset: SegmentationDataset, name: str) -> LabelledPhoto:
    """The example ``name`` (a file name of ``dataset``) with its labels."""
    index = dataset.index_of(name)
    image, truth = dataset.load_raw(index)
    # The content hash keys cached predictions, as for uploads; the labels' path makes it unique per set.
    key = digest(image.tobytes() + str(dataset.samples[index].image).encode())
    return LabelledPhoto(Photo(name, image, image.size, key), truth, list(dataset.classes))


"""Where a model fails, photo by photo: its worst photos, the photos two models disagree on most, and
for one photo the pictures that show it (photo, truth, prediction, error map).

Works from the ``per_image`` entries that ``garbseg.inference.evaluate`` puts in every evaluated
results row, so choosing which photos to show costs nothing; only the photos shown are predicted again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data import IGNORE_INDEX, SegmentationDataset
from ..inference import image_miou
from .overlays import overlay

# Error map colours: right, wrong, ignored (no label to compare with).
RIGHT, WRONG, IGNORED = (46, 160, 67), (220, 40, 40), (150, 150, 150)


def error_map(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``H x W x 3`` uint8: green where the prediction matches the label, red where not, grey where the
    label says ignore."""
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in size")
    out = np.empty((*truth.shape, 3), np.uint8)
    out[:] = WRONG
    out[prediction == truth] = RIGHT
    out[truth == IGNORE_INDEX] = IGNORED
    return out


def worst_images(per_image: list[dict], count: int = 5) -> list[dict]:
    """The ``count`` photos with the lowest mIoU (photos without a score last)."""
    return sorted(per_image, key=lambda e: (e["miou"] is None, e["miou"] if e["miou"] is not None else 0.0))[:count]


def disagreements(per_image_a: list[dict], per_image_b: list[dict], count: int = 5) -> list[dict]:
    """Photos scored by both rows, ordered by how far apart their mIoUs are (largest first):
    ``{"image", "miou_a", "miou_b", "gap"}``."""
    b = {e["image"]: e["miou"] for e in per_image_b}
    pairs = [{"image": e["image"], "miou_a": e["miou"], "miou_b": b[e["image"]]}
             for e in per_image_a if e["image"] in b and e["miou"] is not None and b[e["image"]] is not None]
    for pair in pairs:
        pair["gap"] = round(abs(pair["miou_a"] - pair["miou_b"]), 5)
    return sorted(pairs, key=lambda p: -p["gap"])[:count]


@dataclass
class PhotoReview:
    name: str
    photo: Image.Image
    truth: np.ndarray
    prediction: np.ndarray
    miou: float | None
    num_classes: int

    def truth_picture(self, alpha: float = 0.5) -> Image.Image:
        return overlay(self.photo, self.truth, self.num_classes, alpha=alpha)

    def prediction_picture(self, alpha: float = 0.5) -> Image.Image:
        return overlay(self.photo, self.prediction, self.num_classes, alpha=alpha)

    def error_picture(self) -> Image.Image:
        return Image.fromarray(error_map(self.prediction, self.truth))


def review_photo(predictor, dataset: SegmentationDataset, image_name: str) -> PhotoReview:
    """Predict one photo of ``dataset`` (by file name) again and score it against its labels."""
    photo, truth = dataset.load_raw(dataset.index_of(image_name))
    prediction = predictor.predict(photo)
    return PhotoReview(image_name, photo, truth, prediction, image_miou(prediction, truth, len(dataset.classes)),
                       len(dataset.classes))

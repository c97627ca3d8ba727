"""Pseudo-labels for photos that carry one class each (a folder per class, as TrashNet) but no masks.

The folder says *which* class the object is; trained models (teachers) say *where* it is. Each
teacher runs at its own input size on the photo and on its mirror image; their softmax outputs are
averaged. A pixel whose foreground probability (1 - p(background)) is at least ``foreground`` gets the
folder's class, one at most ``background`` gets background, and everything in between is 255
(ignored by losses and metrics): a teacher that is unsure teaches nothing there.

The result is an image + mask folder set (``train/images``, ``train/masks``, ``classes.txt``) that
``garbseg.data.load_dataset`` reads; images are symbolic links to the originals, never copies.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.errors import GarbsegError
from ..core.files import atomic_write
from ..data import IGNORE_INDEX, IMAGE_SUFFIXES, load_image
from ..inference import Predictor
from ..metrics import ConfusionMatrix, compute_metrics

FOREGROUND, BACKGROUND = 0.7, 0.3  # probability thresholds; between them a pixel is ignored
REPORT = "report.json"  # beside train/: pixels kept per class, and the teachers that made the masks


class PseudoLabelError(GarbsegError):
    """Teachers or photos that cannot make pseudo-labels; the message says why."""


@torch.inference_mode()
def ensemble_probabilities(teachers: Sequence[Predictor], image: Image.Image) -> np.ndarray:
    """``C x H x W`` class probabilities at the photo's size: every teacher, photo and mirror, averaged."""
    total = None
    for teacher in teachers:
        probs = teacher.mirror_averaged_probabilities(teacher.preprocess([image]))
        probs = F.interpolate(probs, size=(image.height, image.width), mode="bilinear", align_corners=False)[0]
        total = probs if total is None else total + probs
    return (total / len(teachers)).numpy()


def pseudo_mask(probabilities: np.ndarray, class_index: int, *, foreground: float = FOREGROUND,
                background: float = BACKGROUND) -> np.ndarray:
    """``H x W`` uint8: ``class_index`` where sure of foreground, 0 where sure of background, 255 between."""
    if not 0.0 <= background < foreground <= 1.0:
        raise PseudoLabelError(f"thresholds must satisfy 0 <= background < foreground <= 1, "
                               f"not {background} and {foreground}")
    fg = 1.0 - probabilities[0]
    mask = np.full(fg.shape, IGNORE_INDEX, np.uint8)
    mask[fg >= foreground] = class_index
    mask[fg <= background] = 0
    return mask


def folder_class_photos(root: str | Path, classes: Sequence[str]) -> list[tuple[Path, str]]:
    """``(photo, class name)`` for every photo in ``root/<class>/``, for the folders named after one of
    ``classes`` (others, e.g. TrashNet's ``trash``, have no class to give and are left out)."""
    root = Path(root)
    if not root.is_dir():
        raise PseudoLabelError(f"{root}: not a folder of class folders")
    photos = [(path, folder.name) for folder in sorted(root.iterdir()) if folder.is_dir() and folder.name in classes
              for path in sorted(folder.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
    if not photos:
        raise PseudoLabelError(f"{root}: no photos in folders named after the classes {list(classes)[1:]}")
    return photos


@dataclass
class PixelReport:
    """How many pixels the pseudo-labels kept, per class, and how many they left unsure."""

    classes: list[str]
    photos: dict[str, int] = field(default_factory=dict)
    labelled: dict[str, int] = field(default_factory=dict)  # pixels given the folder's class
    background: int = 0
    ignored: int = 0

    def add(self, class_name: str, mask: np.ndarray, class_index: int) -> None:
        self.photos[class_name] = self.photos.get(class_name, 0) + 1
        self.labelled[class_name] = self.labelled.get(class_name, 0) + int((mask == class_index).sum())
        self.background += int((mask == 0).sum())
        self.ignored += int((mask == IGNORE_INDEX).sum())

    def as_dict(self) -> dict:
        total = self.background + self.ignored + sum(self.labelled.values())
        return {"photos": self.photos, "labelled_pixels": self.labelled, "background_pixels": self.background,
                "ignored_pixels": self.ignored, "ignored_share": round(self.ignored / total, 4) if total else None}


def make_pseudo_labels(teachers: Sequence[Predictor], photos: Sequence[tuple[Path, str]], out: str | Path, *,
                       foreground: float = FOREGROUND, background: float = BACKGROUND,
                       progress: Callable[[int, int], None] | None = None) -> dict:
    """Write ``out/train/images`` (links), ``out/train/masks`` and ``out/classes.txt``; return the report.

    Photos already labelled in ``out`` are kept (a killed run continues where it stopped)."""
    classes = _shared_classes(teachers)
    out = Path(out)
    images, masks = out / "train" / "images", out / "train" / "masks"
    report = PixelReport(classes)
    for done, (photo, class_name) in enumerate(photos, 1):
        relative = Path(class_name) / photo.name
        mask_path = (masks / relative).with_suffix(".png")
        if mask_path.is_file():
            mask = np.asarray(Image.open(mask_path))
        else:
            probabilities = ensemble_probabilities(teachers, load_image(photo))
            mask = pseudo_mask(probabilities, classes.index(class_name), foreground=foreground, background=background)
            atomic_write(mask_path, lambda tmp: Image.fromarray(mask).save(tmp, format="PNG"))
        link = images / relative
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(photo.resolve(), link)
        report.add(class_name, mask, classes.index(class_name))
        if progress:
            progress(done, len(photos))
    atomic_write(out / "classes.txt", lambda tmp: tmp.write_text("\n".join(classes) + "\n"))
    summary = {**report.as_dict(), "teachers": [t.loaded.name for t in teachers],
               "thresholds": {"foreground": foreground, "background": background}}
    atomic_write(out / REPORT, lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
    return summary


def labelled_by(split_folder: str | Path) -> list[str] | None:
    """The teachers that made a pseudo-labelled split's masks (its set's report), or None for data that
    no report describes (hand-labelled sets), so a checkpoint can record whose labels it learned from."""
    report = Path(split_folder).parent / REPORT
    try:
        teachers = json.loads(report.read_text()).get("teachers")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(t) for t in teachers] if isinstance(teachers, list) else None


def _shared_classes(teachers: Sequence[Predictor]) -> list[str]:
    if not teachers:
        raise PseudoLabelError("at least one teacher model is needed")
    classes = list(teachers[0].classes)
    for teacher in teachers[1:]:
        if list(teacher.classes) != classes:
            raise PseudoLabelError(f"teachers disagree on classes: {teacher.loaded.name} has {teacher.classes}, "
                                   f"{teachers[0].loaded.name} has {classes}")
    return classes


def check_on_labelled(teachers: Sequence[Predictor], dataset, *, foreground: float = FOREGROUND,
                      background: float = BACKGROUND, progress: Callable[[int, int], None] | None = None) -> dict:
    """Pseudo-label photos whose labels are known, the same way (each photo's class from its labels, as a
    folder would give it), and score them against the real labels.

    ``kept_miou``: mIoU over the pixels the pseudo-labels keep (what training learns from);
    ``kept_share``: the share of labelled pixels kept; ``ensemble_miou``: the teachers' own argmax on
    all pixels, for comparison. One confusion matrix over the whole set for each.
    """
    classes = _shared_classes(teachers)
    kept, ensemble = ConfusionMatrix(len(classes)), ConfusionMatrix(len(classes))
    total_pixels = kept_pixels = 0
    for i in range(len(dataset)):
        image, truth = dataset.load_raw(i)
        counts = np.bincount(truth[truth != IGNORE_INDEX].ravel(), minlength=len(classes))
        probabilities = ensemble_probabilities(teachers, image)
        ensemble.update(probabilities.argmax(0).astype(np.uint8), truth)
        if counts[1:].sum():  # a photo with an object: its majority class is what its folder would say
            mask = pseudo_mask(probabilities, int(counts[1:].argmax()) + 1, foreground=foreground,
                               background=background)
            sure = (mask != IGNORE_INDEX) & (truth != IGNORE_INDEX)
            kept.update(mask[sure], truth[sure])
            total_pixels += int((truth != IGNORE_INDEX).sum())
            kept_pixels += int(sure.sum())
        if progress:
            progress(i + 1, len(dataset))
    return {"images": len(dataset), "kept_miou": compute_metrics(kept.matrix, classes)["miou"],
            "kept_per_class_iou": compute_metrics(kept.matrix, classes)["per_class_iou"],
            "kept_share": round(kept_pixels / total_pixels, 4) if total_pixels else None,
            "ensemble_miou": compute_metrics(ensemble.matrix, classes)["miou"],
            "teachers": [t.loaded.name for t in teachers], "thresholds": {"foreground": foreground,
                                                                          "background": background}}

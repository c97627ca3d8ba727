"""Real images for int8 calibration (train split) and for checks against the eager model (val split).

Images go through the same preprocessing as :class:`garbseg.inference.predictor.Predictor`, so calibration sees
exactly the activations the runtime will see in use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...data import load_dataset, load_image
from ..processing import prepare_image
from .base import BuildContext, RuntimeUnavailable

# Train images used to set int8 ranges, spread evenly over the split (NNCF's statistics pass: about
# 1 s for MobileNetV2-LR-ASPP at 224 on 2 quiet cores, not worth trading accuracy for).
CALIBRATION_IMAGES = 128


def split_images(data_dir: Path | None, split: str) -> list[Path]:
    """Image files of ``split`` in a YOLO-style data root (sorted, so runs are reproducible)."""
    if data_dir is None:
        return []
    try:
        return list(load_dataset(data_dir, split).image_paths)
    except Exception:  # a missing or unreadable data set means "no images", not a crash
        return []


def preprocess_paths(paths: list[Path], ctx: BuildContext) -> list[np.ndarray]:
    """``1 x 3 x S x S`` float32 arrays, preprocessed as the Predictor does."""
    meta = ctx.loaded.meta
    return [prepare_image(load_image(p), ctx.size, meta.mean, meta.std)[None] for p in paths]


def calibration_arrays(ctx: BuildContext, limit: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Preprocessed train images, evenly spread over the split; raises when there are none."""
    paths = split_images(ctx.data_dir, "train")
    if not paths:
        raise RuntimeUnavailable(f"int8 needs calibration images: no train split under {ctx.data_dir}")
    paths = [paths[i] for i in _spread(len(paths), limit)]
    ctx.log(f"calibrating on {len(paths)} train images")
    return preprocess_paths(paths, ctx)


def _spread(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` indices evenly spread over ``range(n)``."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))

"""One photo through one model: the mask, how long it took, and the picture to show.

The Segment page compares several models on the same photo; this keeps the per-model work (and its
timing, measured the same way for every model) out of the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..present.overlays import legend_rows, overlay


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

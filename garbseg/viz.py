"""Pictures of predictions: palettes, colour masks, overlays and outlines (pure functions).

Plotly figures for the benchmark live in ``charts.py``; this module only handles images.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image

# Background is black; classes get well separated, saturated hues.
_BASE_COLOURS = [
    (0, 0, 0), (46, 204, 64), (177, 119, 59), (0, 190, 255), (160, 160, 175),
    (255, 220, 0), (255, 65, 54), (240, 18, 190), (255, 133, 27), (61, 153, 112),
    (127, 219, 255), (133, 20, 75), (1, 255, 112),
]


def palette(num_classes: int) -> np.ndarray:
    """``num_classes x 3`` uint8 colours; index 0 (background) is black."""
    colours = list(_BASE_COLOURS[:num_classes])
    for i in range(len(colours), num_classes):  # more classes than base colours: golden-ratio hues
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.asarray(colours, dtype=np.uint8)


def colour_hex(num_classes: int) -> list[str]:
    return ["#%02x%02x%02x" % tuple(c) for c in palette(num_classes)]


def colorize(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """``H x W x 3`` colours of a class-id mask (ignore/out-of-range ids shown as white)."""
    pal = np.vstack([palette(num_classes), np.full((256 - num_classes, 3), 255, np.uint8)])
    return pal[mask]


def mask_to_png(mask: np.ndarray, num_classes: int) -> Image.Image:
    """A palette ("P") image: pixel values are the class ids, viewers still show colours."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(palette(num_classes).flatten().tolist())
    return image


def outline(mask: np.ndarray) -> np.ndarray:
    """Boolean map of pixels whose right or lower neighbour has another class."""
    edge = np.zeros(mask.shape, bool)
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
    edge[:, 1:] |= edge[:, :-1].copy()
    edge[1:, :] |= edge[:-1, :].copy()
    return edge


def overlay(image: Image.Image, mask: np.ndarray, num_classes: int, *, alpha: float = 0.5,
            style: str = "overlay") -> Image.Image:
    """Draw ``mask`` on ``image``: ``overlay`` blends class colours where the class is not background,
    ``mask`` shows the colour mask alone, ``outline`` draws class borders only."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but mask is {mask.shape[1]}x{mask.shape[0]}")
    colours = colorize(mask, num_classes).astype(np.float32)
    if style == "mask":
        return Image.fromarray(colours.astype(np.uint8))
    if style == "outline":
        where = outline(mask)
        a = 1.0
    elif style == "overlay":
        where = mask > 0
        a = float(alpha)
    else:
        raise ValueError(f"style must be overlay, mask or outline, not {style!r}")
    out = rgb.copy()
    out[where] = (1 - a) * rgb[where] + a * colours[where]
    return Image.fromarray(out.round().astype(np.uint8))


def class_shares(mask: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Fraction of pixels of each class (for legends)."""
    counts = np.bincount(mask.ravel(), minlength=len(classes))[: len(classes)]
    return {name: float(c) / mask.size for name, c in zip(classes, counts)}

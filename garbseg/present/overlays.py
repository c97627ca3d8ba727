"""Pictures of predictions, as pure functions: palettes, colour masks, overlays and outlines, and
the class legend. Nothing here imports Streamlit; pictures are returned, never shown.
"""

from __future__ import annotations

import colorsys
import html

import numpy as np
from PIL import Image

try:  # OpenCV blends and looks up colours ~10x faster than numpy; optional (numpy fallback below)
    import cv2
except ImportError:  # pragma: no cover - exercised by monkeypatching cv2 to None
    cv2 = None

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


def _colour_table(num_classes: int) -> np.ndarray:
    """``256 x 3`` uint8: the palette, then white for ignore/out-of-range ids."""
    return np.vstack([palette(num_classes), np.full((256 - num_classes, 3), 255, np.uint8)])


def colorize(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """``H x W x 3`` colours of a class-id mask (ignore/out-of-range ids shown as white)."""
    table = _colour_table(num_classes)
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if cv2 is not None:  # one 256-entry lookup per channel
        return cv2.merge([cv2.LUT(mask, np.ascontiguousarray(table[:, c])) for c in range(3)])
    return np.take(table, mask, axis=0)


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
    ``mask`` shows the colour mask alone, ``outline`` draws class borders only.

    Blending is done in uint8, within one grey level of ``round((1 - alpha) * pixel + alpha * colour)``:
    OpenCV's ``addWeighted`` over the frame, then only the non-background pixels copied over the photo
    (a 640x640 frame in well under 2 ms; float32 over the whole frame took ~30-50 ms). Without OpenCV,
    numpy in 8-bit fixed point.
    """
    rgb = np.asarray(image.convert("RGB"))
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but mask is {mask.shape[1]}x{mask.shape[0]}")
    if style not in ("overlay", "mask", "outline"):
        raise ValueError(f"style must be overlay, mask or outline, not {style!r}")
    colours = colorize(mask, num_classes)
    if style == "mask":
        return Image.fromarray(colours)
    if style == "outline":
        return Image.fromarray(_paste(rgb, colours, outline(mask)))
    return Image.fromarray(_paste(rgb, _blend(rgb, colours, float(alpha)), mask > 0))


def _blend(rgb: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * rgb + alpha * colours``, rounded, as uint8 (every pixel)."""
    alpha = min(max(alpha, 0.0), 1.0)
    if cv2 is not None:
        return cv2.addWeighted(rgb, 1.0 - alpha, colours, alpha, 0.0)
    # 8-bit fixed point: weights in 1/256 steps, +128 rounds; the weight's own rounding adds < 0.5 level.
    weight = int(round(alpha * 256))
    mixed = rgb.astype(np.uint16) * (256 - weight) + colours.astype(np.uint16) * weight + 128
    return (mixed >> 8).astype(np.uint8)


def _paste(rgb: np.ndarray, drawn: np.ndarray, where: np.ndarray) -> np.ndarray:
    """A copy of ``rgb`` with ``drawn`` where ``where`` is true."""
    if cv2 is None:
        return np.where(where[..., None], drawn, rgb)  # several times faster than boolean indexing
    out = rgb.copy()
    cv2.copyTo(drawn, where.view(np.uint8), out)
    return out


def class_shares(mask: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Fraction of pixels of each class (for legends)."""
    counts = np.bincount(mask.ravel(), minlength=len(classes))[: len(classes)]
    return {name: float(c) / mask.size for name, c in zip(classes, counts)}


def legend_rows(mask: np.ndarray, classes: list[str], *, include_absent: bool = False) -> list[dict]:
    """One entry per class (colour, name, share of pixels), largest share first."""
    colours = colour_hex(len(classes))
    shares = class_shares(mask, classes)
    rows = [{"colour": colours[i], "name": name, "share": shares[name]} for i, name in enumerate(classes)]
    rows = [r for r in rows if include_absent or r["share"] > 0]
    return sorted(rows, key=lambda r: -r["share"])


def legend_html(rows: list[dict]) -> str:
    """The legend as small HTML: a colour swatch, the class name and its share of the image."""
    items = []
    for r in rows:
        swatch = (f'<span style="display:inline-block;width:0.9em;height:0.9em;border:1px solid #888;'
                  f'background:{r["colour"]};margin-right:0.35em;vertical-align:middle"></span>')
        items.append(f'<div style="white-space:nowrap">{swatch}{html.escape(r["name"])} '
                     f'<span style="opacity:0.7">{100 * r["share"]:.1f}%</span></div>')
    return "".join(items)

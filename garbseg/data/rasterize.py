"""Polygons and COCO run-length encodings turned into pixel masks.

Polygon convention (same for YOLO and COCO): a vertex at continuous pixel coordinates ``(x, y)`` -
``x = x_norm * width`` with 0 at the left edge of the image - is snapped to the pixel that contains
it, ``(floor(x), floor(y))``. PIL's ``ImageDraw.polygon`` then fills the polygon through those
pixel centres: every pixel whose centre lies inside or on it, plus the pixels its slanted edges
pass through as drawn lines. Boundary pixels are thus included (a shape can be up to one pixel
larger than a strict centre-inside test), as with Ultralytics (int cast + ``cv2.fillPoly``), so masks
agree with what YOLOv8-seg trains on. Where polygons overlap, the later (line / annotation) wins.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def rasterize_polygons(
    polygons: Sequence[tuple[int, np.ndarray]], height: int, width: int
) -> np.ndarray:
    """Paint ``(value, Nx2 pixel coords)`` polygons into a ``uint8`` HxW mask (0 elsewhere).

    Coordinates are continuous pixel coordinates (0 = top/left image edge); see the module
    docstring for how pixels are chosen. Later polygons overwrite earlier ones.
    """
    canvas = Image.new("L", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(canvas)
    for value, points in polygons:
        # Snap explicitly rather than rely on how a PIL version rounds floats.
        pixels = np.floor(np.asarray(points, dtype=np.float64)).astype(np.int64)
        draw.polygon([(int(x), int(y)) for x, y in pixels], fill=int(value))
    return np.array(canvas, dtype=np.uint8)


def decode_rle_string(counts: str) -> list[int]:
    """Decode COCO's compressed RLE string into run lengths.

    Each run length is written in 5-bit groups, least significant first, as characters
    ``chr(48 + group)``; bit 0x20 says another group follows and bit 0x10 of the last group is the
    sign. From the fourth run on, the stored value is the difference to the run two places back.
    """
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    pos = 0
    while pos < len(data):
        value, shift = 0, 0
        while True:
            if pos >= len(data):
                raise ValueError("compressed RLE string ends in the middle of a number")
            group = data[pos] - 48
            if not 0 <= group < 64:
                raise ValueError(f"invalid character {chr(data[pos])!r} in compressed RLE")
            pos += 1
            value |= (group & 0x1F) << shift
            shift += 5
            if not group & 0x20:
                if group & 0x10:
                    value -= 1 << shift  # sign-extend a negative difference
                break
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_to_mask(runs: Sequence[int], height: int, width: int) -> np.ndarray:
    """Expand alternating background/foreground run lengths (column-major, COCO) to a bool mask."""
    runs = np.asarray(runs, dtype=np.int64)
    if (runs < 0).any() or runs.sum() != height * width:
        raise ValueError(f"RLE runs sum to {runs.sum()} but the mask has {height}x{width} pixels")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True  # runs start with background
    return np.repeat(values, runs).reshape(width, height).T

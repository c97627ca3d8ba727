"""Decoding photos to RGB (EXIF orientation, any PIL mode) and listing the image files of a folder."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .constants import IMAGE_SUFFIXES, DatasetError

T = TypeVar("T")


EXIF_ORIENTATION = 0x0112


def load_image(source: str | os.PathLike | bytes | bytearray | BinaryIO | Image.Image) -> Image.Image:
    """Decode an image to RGB with its EXIF orientation applied.

    Accepts a path, the encoded bytes, a binary file-like object or a PIL image. Any mode is converted to RGB:
    16-bit greyscale is scaled to 8 bits, transparent areas are composited over white (what a viewer
    shows), CMYK/palette/greyscale go through PIL's converter.
    """
    if isinstance(source, Image.Image):  # already decoded: still honour EXIF and the mode
        if source.getexif().get(EXIF_ORIENTATION, 1) != 1:
            source = ImageOps.exif_transpose(source)
        return _to_rgb(source)
    label = _source_label(source)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    return _decode_with(source, lambda img: _to_rgb(ImageOps.exif_transpose(img)), f"image {label}")


def _decode_with(source: str | os.PathLike | BinaryIO, convert: Callable[[Image.Image], T], what: str) -> T:
    """Open and fully decode ``source`` with PIL, then ``convert`` the image while the file is open.

    Any failure other than a DatasetError becomes one that names ``what`` ("image <path>").
    """
    try:
        with Image.open(source) as img:
            img.load()  # decode now so a truncated file fails here, not later in a worker
            return convert(img)
    except DatasetError:
        raise
    except UnidentifiedImageError as exc:  # its text is the file object's repr: say what it means instead
        raise DatasetError(f"cannot decode {what}: not a known image format") from exc
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"cannot decode {what}: {exc}".replace(", could be decompression bomb DOS attack.",
                                                                  " (a decompression bomb?)")) from exc
    except OSError as exc:
        if "truncated" not in str(exc).lower():
            raise DatasetError(f"cannot decode {what}: {exc}") from exc
        raise DatasetError(f"cannot decode {what}: the file is cut short (truncated)") from exc
    except Exception as exc:  # PIL raises many types for undecodable files
        raise DatasetError(f"cannot decode {what}: {exc}") from exc


def _source_label(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return str(getattr(source, "name", "<file object>"))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        return Image.fromarray(_high_depth_to_uint8(img), "L").convert("RGB")
    has_alpha = "A" in img.mode or "a" in img.mode
    if has_alpha or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    # PIL's own convert() clips 16-bit values at 255 (a white image); scale instead.
    arr = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
        arr = arr * (255.0 / 65535.0)
    elif img.mode == "F" and arr.max(initial=0) <= 1.0:
        arr = arr * 255.0  # float images are usually in [0, 1]
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def list_images(folder: Path) -> list[Path]:
    images = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not images:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}")
    return images

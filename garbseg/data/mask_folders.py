"""Image + mask folders: ``images/`` + ``masks/``; masks are PNGs with the image's stem whose pixel
values are class indices (0 = background, 255 = ignore). Class names come from ``classes.txt`` /
``classes.json`` in the split or dataset folder, or are numbered after the largest value used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .constants import CLASS_FILE_NAMES, IGNORE_INDEX, MASK_SUFFIXES, DatasetError
from .dataset import Sample, SegmentationDataset, _report
from .images import _decode_with, list_images


def _masks_dataset(folder: Path, name: str, options: dict) -> SegmentationDataset:
    images = list_images(folder / "images")
    samples, problems = [], []
    for image in images:
        mask = _find_mask(folder / "masks", image.relative_to(folder / "images"))
        if mask is None:
            problems.append(f"{image}: no mask in {folder / 'masks'} (looked for {image.stem}.png)")
        else:
            samples.append(Sample(image, mask))
    _report(problems, options["on_error"], str(folder))
    if not samples:
        raise DatasetError(f"no image in {folder / 'images'} has a mask")
    classes = _read_class_file(folder) or _read_class_file(folder.parent)
    if classes is None:
        classes, samples = _infer_mask_classes(samples, options["on_error"])
    return SegmentationDataset(
        samples, classes, read_mask=_read_mask_file, name=name, root=folder, layout="masks", **options
    )


def _find_mask(mask_folder: Path, relative: Path) -> Path | None:
    stem = relative.with_suffix("")
    for suffix in MASK_SUFFIXES:
        for candidate in (stem.with_suffix(suffix), stem.parent / f"{stem.name}_mask{suffix}"):
            if (mask_folder / candidate).is_file():
                return mask_folder / candidate
    return None


def _read_class_file(folder: Path) -> list[str] | None:
    text_file, json_file = (folder / n for n in CLASS_FILE_NAMES)
    if text_file.is_file():
        names = [line.strip() for line in text_file.read_text(encoding="utf-8").splitlines()]
        return [n for n in names if n] or None
    if json_file.is_file():
        try:
            data = json.loads(json_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read {json_file}: {exc}") from exc
        if isinstance(data, dict):
            by_id = {int(k): str(v) for k, v in data.items()}
            return [by_id.get(i, f"class_{i}") for i in range(max(by_id) + 1)]
        return [str(n) for n in data]
    return None


def _infer_mask_classes(samples: list[Sample], on_error: str) -> tuple[list[str], list[Sample]]:
    """Without a class file, name classes after the largest value any mask uses."""
    largest, good, problems = 0, [], []
    for sample in samples:
        try:
            values = np.unique(_decode_mask(sample.label))
        except DatasetError as exc:
            problems.append(str(exc))
            continue
        values = values[values != IGNORE_INDEX]
        largest = max(largest, int(values.max(initial=0)))
        good.append(sample)
    _report(problems, on_error, "masks")
    return ["background", *(f"class_{i}" for i in range(1, largest + 1))], good


def _decode_mask(path: Path) -> np.ndarray:
    return _decode_with(path, lambda img: _mask_array(img, path), f"mask {path}")


def _mask_array(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode in ("L", "P", "1"):
        return np.array(img, dtype=np.uint8)  # palette indices are the class ids
    if img.mode.startswith("I"):
        arr = np.asarray(img)
        if arr.max(initial=0) > 255 or arr.min(initial=0) < 0:
            raise DatasetError(f"mask {path} has values outside 0..255")
        return arr.astype(np.uint8)
    if img.mode in ("RGB", "RGBA"):
        arr = np.asarray(img)[..., :3]
        if (arr == arr[..., :1]).all():  # grey stored as RGB
            return np.array(arr[..., 0], dtype=np.uint8)
    raise DatasetError(
        f"mask {path} is a {img.mode} image; expected one channel of class indices "
        f"(0 = background, {IGNORE_INDEX} = ignore)"
    )


def _read_mask_file(sample: Sample, size: tuple[int, int]) -> np.ndarray:
    mask = _decode_mask(sample.label)
    if mask.shape != (size[1], size[0]):
        raise DatasetError(
            f"mask {sample.label} is {mask.shape[1]}x{mask.shape[0]} "
            f"but its image {sample.image.name} is {size[0]}x{size[1]}"
        )
    return mask

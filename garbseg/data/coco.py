"""COCO: a JSON file (or a folder holding ``annotations.json`` / ``_annotations.coco.json``, the
Roboflow export) with polygon or RLE segmentations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .constants import DatasetError
from .dataset import Sample, SegmentationDataset, _report
from .rasterize import decode_rle_string, rasterize_polygons, rle_to_mask


def _coco_dataset(json_path: Path, name: str, options: dict) -> SegmentationDataset:
    try:
        coco = json.loads(json_path.read_text(encoding="utf-8"))
        images, annotations = coco["images"], coco.get("annotations") or []
        value_of, names = _coco_classes(coco["categories"], annotations)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{json_path} is not a readable COCO file: {exc!r}") from exc
    by_image: dict[Any, list] = {}
    for ann in annotations:
        if ann.get("category_id") not in value_of:
            raise DatasetError(f"{json_path}: annotation {ann.get('id')} has unknown category")
        by_image.setdefault(ann.get("image_id"), []).append(
            (value_of[ann["category_id"]], ann.get("segmentation"))
        )
    samples, problems = [], []
    for info in images:
        path = _find_coco_image(json_path.parent, str(info.get("file_name", "")))
        if path is None:
            problems.append(f"{json_path}: image {info.get('file_name')!r} not found")
            continue
        try:
            size = (int(info["width"]), int(info["height"]))
        except (KeyError, TypeError, ValueError):
            problems.append(f"{json_path}: image {info.get('file_name')!r} has no width/height")
            continue
        anns = tuple(by_image.get(info.get("id"), ()))
        samples.append(Sample(path, json_path, anns, size))
    _report(problems, options["on_error"], str(json_path))
    if not samples:
        raise DatasetError(f"{json_path} lists no usable images")
    return SegmentationDataset(
        samples, ["background", *names], read_mask=_read_coco_mask, name=name, root=json_path.parent,
        layout="coco", **options,
    )


def _coco_classes(categories: list[dict], annotations: list[dict]) -> tuple[dict, list[str]]:
    """Category id -> mask value 1..K (sorted by id), leaving out unused super-categories.

    Roboflow exports add a category (often id 0) named after the project whose name is the
    ``supercategory`` of all the real ones and that no annotation uses; it is not a class.
    """
    used = {ann.get("category_id") for ann in annotations}
    parents = {c.get("supercategory") for c in categories}
    kept = [
        c for c in sorted(categories, key=lambda c: c["id"])
        if c["id"] in used or c.get("name") not in parents
    ]
    value_of = {c["id"]: value for value, c in enumerate(kept, start=1)}
    return value_of, [str(c["name"]) for c in kept]


def _find_coco_image(folder: Path, file_name: str) -> Path | None:
    base = Path(file_name).name
    for candidate in (folder / file_name, folder / "images" / file_name, folder / base,
                      folder / "images" / base):
        if candidate.is_file():
            return candidate
    return None


def _read_coco_mask(sample: Sample, size: tuple[int, int]) -> np.ndarray:
    if size != sample.size:
        raise DatasetError(
            f"{sample.label}: image {sample.image.name} is {size[0]}x{size[1]} but the "
            f"annotation file says {sample.size[0]}x{sample.size[1]}"
        )
    width, height = size
    mask = np.zeros((height, width), dtype=np.uint8)
    for value, segmentation in sample.annotations:
        try:
            _paint_segmentation(mask, value, segmentation)
        except (ValueError, TypeError, KeyError) as exc:
            raise DatasetError(f"{sample.label}: bad segmentation for {sample.image.name}: {exc}")
    return mask


def _paint_segmentation(mask: np.ndarray, value: int, segmentation: Any) -> None:
    """Paint one annotation over ``mask`` in place (later annotations overwrite earlier ones)."""
    height, width = mask.shape
    if not segmentation:
        return  # box-only annotation: nothing to paint
    if isinstance(segmentation, list):
        polygons = []
        for flat in segmentation:
            if len(flat) < 6 or len(flat) % 2:
                raise ValueError(f"polygon with {len(flat)} numbers")
            polygons.append((1, np.asarray(flat, dtype=np.float64).reshape(-1, 2)))
        mask[rasterize_polygons(polygons, height, width) > 0] = value
        return
    rle_height, rle_width = segmentation["size"]
    if (rle_height, rle_width) != (height, width):
        raise ValueError(f"RLE size {rle_width}x{rle_height} differs from the image")
    counts = segmentation["counts"]
    runs = decode_rle_string(counts) if isinstance(counts, (str, bytes)) else counts
    mask[rle_to_mask(runs, height, width)] = value

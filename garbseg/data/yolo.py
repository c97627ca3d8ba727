"""YOLOv8-seg: ``data.yaml`` + ``<split>/images`` + ``<split>/labels/*.txt`` with lines
``class x1 y1 x2 y2 ...`` (coordinates normalised to [0, 1]). Data class id ``k`` becomes mask
value ``k + 1``. A missing or empty label file means "background only", as in Ultralytics."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import yaml

from .constants import DatasetError
from .dataset import Sample, SegmentationDataset
from .images import list_images
from .rasterize import rasterize_polygons


def _read_yaml(path: Path) -> dict:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise DatasetError(f"{path} is not a YAML mapping")
    return config


def _yaml_names(config: dict, path: Path) -> list[str]:
    names = config.get("names")
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except ValueError as exc:
            raise DatasetError(f"{path}: names keys must be class ids") from exc
        if not by_id or min(by_id) < 0:
            raise DatasetError(f"{path}: names must map ids 0..K-1 to class names")
        # A gap in the ids still needs a slot so that id k stays mask value k + 1.
        return [by_id.get(i, f"class_{i}") for i in range(max(by_id) + 1)]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise DatasetError(f"{path}: 'names' must be a non-empty list or an id -> name mapping")


def _yaml_splits(config: dict, yaml_path: Path) -> dict[str, list[Path]]:
    """Map split names (train/val/test) to the image folders or list files they name."""
    base = _yaml_base(config, yaml_path)
    splits = {}
    for key in ("train", "val", "test"):
        value = config.get(key)
        if not value:
            continue
        entries = value if isinstance(value, list) else [value]
        splits[key] = [_resolve_yaml_entry(base, str(entry)) for entry in entries]
    return splits


def _yaml_base(config: dict, yaml_path: Path) -> Path:
    folder = yaml_path.parent
    declared = config.get("path")
    if not declared:
        return folder
    base = Path(declared).expanduser()
    base = base if base.is_absolute() else folder / base
    # An absolute path written on another machine: fall back to the yaml's own folder.
    return base if base.is_dir() else folder


def _resolve_yaml_entry(base: Path, entry: str) -> Path:
    candidate = base / entry
    # Roboflow writes "../train/images" relative to a folder one level down; Ultralytics retries.
    if not candidate.exists() and entry.startswith("../"):
        candidate = base / entry[3:]
    return candidate


def _images_from_entry(entry: Path, yaml_path: Path) -> list[Path]:
    if entry.is_dir():
        return list_images(entry)
    if entry.is_file() and entry.suffix == ".txt":  # Ultralytics image list file
        lines = entry.read_text(encoding="utf-8").split()
        return [(entry.parent / line).resolve() for line in lines]
    raise DatasetError(f"{yaml_path}: split path {entry} does not exist")


def yolo_label_path(image_path: Path) -> Path:
    """The label file Ultralytics pairs with an image: last ``images`` folder -> ``labels``."""
    parts = list(image_path.parts)
    folders = parts[:-1]
    if "images" in folders:
        last = len(folders) - 1 - folders[::-1].index("images")
        parts[last] = "labels"
    return Path(*parts).with_suffix(".txt")


def _yolo_dataset(
    images: list[Path], names: list[str] | None, root: Path, name: str, options: dict
) -> SegmentationDataset:
    samples = [Sample(image, yolo_label_path(image)) for image in images]
    if not any(s.label.is_file() for s in samples):
        raise DatasetError(
            f"no YOLO label files found for {len(images)} images of {root} "
            f"(expected e.g. {samples[0].label})"
        )
    if names is None:
        names = [f"class_{i}" for i in range(_max_yolo_class(samples) + 1)]
    read = partial(_read_yolo_mask, num_classes=len(names))
    return SegmentationDataset(
        samples, ["background", *names], read_mask=read, name=name, root=root, layout="yolo", **options
    )


def _max_yolo_class(samples: list[Sample]) -> int:
    """Largest class id used; only needed when no data.yaml names the classes."""
    largest = -1
    for sample in samples:
        for class_id, _ in parse_yolo_label(sample.label, None):
            largest = max(largest, class_id)
    return max(largest, 0)


def parse_yolo_label(path: Path, num_classes: int | None) -> list[tuple[int, np.ndarray]]:
    """``(class id, Nx2 normalised points)`` per line; a missing file means no objects."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read label file {path}: {exc}") from exc
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            objects.append(_parse_yolo_line(line, f"{path}, line {number}", num_classes))
    return objects


def _parse_yolo_line(line: str, where: str, num_classes: int | None) -> tuple[int, np.ndarray]:
    fields = line.split()
    try:
        class_value = float(fields[0])
        coords = np.array(fields[1:], dtype=np.float64)
    except ValueError:
        raise DatasetError(f"{where}: non-numeric value in {line.strip()[:80]!r}") from None
    if not class_value.is_integer() or class_value < 0:
        raise DatasetError(f"{where}: class id {fields[0]!r} is not a non-negative integer")
    class_id = int(class_value)
    if num_classes is not None and class_id >= num_classes:
        raise DatasetError(f"{where}: class id {class_id} out of range 0..{num_classes - 1}")
    if len(coords) % 2:
        raise DatasetError(f"{where}: odd number of coordinates ({len(coords)})")
    if len(coords) < 6:
        hint = " (4 numbers look like a YOLO box, not a polygon)" if len(coords) == 4 else ""
        raise DatasetError(f"{where}: a polygon needs at least 3 points{hint}")
    if not np.isfinite(coords).all() or coords.min() < -0.01 or coords.max() > 1.01:
        raise DatasetError(f"{where}: coordinates must be normalised to [0, 1]")
    return class_id, np.clip(coords, 0.0, 1.0).reshape(-1, 2)


def _read_yolo_mask(sample: Sample, size: tuple[int, int], num_classes: int) -> np.ndarray:
    width, height = size
    scale = np.array([width, height], dtype=np.float64)
    polygons = [(cid + 1, pts * scale) for cid, pts in parse_yolo_label(sample.label, num_classes)]
    return rasterize_polygons(polygons, height, width)

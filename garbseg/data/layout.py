"""Which on-disk layout a path holds and which split to open: `load_dataset`, `available_splits`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from .coco import _coco_dataset
from .constants import COCO_FILE_NAMES, SPLIT_ALIASES, DatasetError
from .dataset import SegmentationDataset, _check_on_error
from .images import list_images
from .mask_folders import _masks_dataset
from .yolo import _images_from_entry, _read_yaml, _yaml_names, _yaml_splits, _yolo_dataset


def load_dataset(
    path: str | os.PathLike,
    split: str | None = None,
    *,
    transform: Callable | None = None,
    on_error: str = "raise",
    cache: bool = False,
    cache_max_side: int | None = None,
) -> SegmentationDataset:
    """Open a YOLOv8-seg, image+mask or COCO dataset (see the module docstring).

    ``path`` is a dataset root (then ``split`` picks e.g. "train" / "val"), a split folder itself
    (``split`` is ignored), a ``data.yaml`` or a COCO ``.json`` file.
    """
    _check_on_error(on_error)
    options = dict(transform=transform, on_error=on_error, cache=cache, cache_max_side=cache_max_side)
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset path {path} does not exist")
    if path.is_file():
        return _load_file(path, split, options)
    if (path / "data.yaml").is_file():
        return _yolo_root(path / "data.yaml", split, options)
    if _is_split_folder(path):
        return _load_split_folder(path, options)
    splits = available_splits(path)
    if not splits:
        raise DatasetError(_unknown_layout_message(path))
    if split is None:
        raise DatasetError(f"{path} holds several splits {splits}; pass split= one of them")
    return _load_split_folder(path / _resolve_split(split, splits, path), options)


def available_splits(path: str | os.PathLike) -> list[str]:
    """Split names under a dataset root; [] for a split folder or a single file."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return list(_yaml_splits(_read_yaml(path), path))
    if not path.is_dir():
        return []
    if (path / "data.yaml").is_file():
        return list(_yaml_splits(_read_yaml(path / "data.yaml"), path / "data.yaml"))
    if _is_split_folder(path):
        return []
    return sorted(p.name for p in path.iterdir() if p.is_dir() and _is_split_folder(p))


EVAL_SPLIT_PREFERENCE = ("val", "valid", "validation", "test")


def preferred_split(path: str | os.PathLike) -> str | None:
    """The split to evaluate on by default (val-like first, else the first), or None for a single split."""
    splits = available_splits(path)
    if not splits:
        return None
    return next((name for name in EVAL_SPLIT_PREFERENCE if name in splits), splits[0])


def _is_split_folder(folder: Path) -> bool:
    images = (folder / "images").is_dir()
    has_labels = (folder / "labels").is_dir() or (folder / "masks").is_dir()
    return (images and has_labels) or _find_coco_json(folder) is not None


def _find_coco_json(folder: Path) -> Path | None:
    for name in COCO_FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _unknown_layout_message(path: Path) -> str:
    if (path / "images").is_dir():
        return f"{path} has images/ but neither labels/ (YOLO) nor masks/ (image+mask) next to it"
    return (
        f"no dataset found in {path}: looked for data.yaml (YOLOv8-seg), images/ + labels/ "
        f"(YOLO split), images/ + masks/ (image+mask), {' or '.join(COCO_FILE_NAMES)} (COCO), "
        f"and sub-folders (splits) holding any of these"
    )


def _resolve_split(split: str, available: Sequence[str], where: Path) -> str:
    for candidate in SPLIT_ALIASES.get(split, (split,)):
        if candidate in available:
            return candidate
    raise DatasetError(f"split {split!r} not found in {where}; available splits: {list(available)}")


def _load_file(path: Path, split: str | None, options: dict) -> SegmentationDataset:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _coco_dataset(path, _split_name(path.parent) if path.name in COCO_FILE_NAMES
                             else f"{path.parent.resolve().name}/{path.stem}", options)
    if suffix in (".yaml", ".yml"):
        return _yolo_root(path, split, options)
    raise DatasetError(f"{path}: expected a dataset folder, a data.yaml or a COCO .json file")


def _yolo_root(yaml_path: Path, split: str | None, options: dict) -> SegmentationDataset:
    """One split of a data.yaml root (choosing the split is this module's job, reading YOLO is yolo.py's)."""
    config = _read_yaml(yaml_path)
    names = _yaml_names(config, yaml_path)
    splits = _yaml_splits(config, yaml_path)
    if not splits:
        raise DatasetError(f"{yaml_path} names no train/val/test split")
    if split is None:
        raise DatasetError(
            f"{yaml_path.parent} holds several splits {list(splits)}; pass split= one of them"
        )
    key = _resolve_split(split, list(splits), yaml_path)
    images = []
    for entry in splits[key]:
        images += _images_from_entry(entry, yaml_path)
    # root is the split's folder, as for the other layouts ("<root>/train/images" -> ".../train").
    first = splits[key][0]
    root = first.parent if first.name == "images" else first
    name = f"{yaml_path.parent.resolve().name}/{key}"
    return _yolo_dataset(images, names, root, name, options)


def _split_name(folder: Path) -> str:
    """"<dataset>/<split>", e.g. "garbage-seg/val"."""
    folder = folder.resolve()
    return f"{folder.parent.name}/{folder.name}"


def _load_split_folder(folder: Path, options: dict) -> SegmentationDataset:
    """One split; class names may come from the dataset root (the parent folder)."""
    name = _split_name(folder)
    if (folder / "images").is_dir() and (folder / "labels").is_dir():
        yaml_path = folder.parent / "data.yaml"
        names = _yaml_names(_read_yaml(yaml_path), yaml_path) if yaml_path.is_file() else None
        images = list_images(folder / "images")
        return _yolo_dataset(images, names, folder, name, options)
    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        return _masks_dataset(folder, name, options)
    coco = _find_coco_json(folder)
    if coco is not None:
        return _coco_dataset(coco, name, options)
    raise DatasetError(_unknown_layout_message(folder))

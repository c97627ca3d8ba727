"""Segmentation datasets and paired image/mask transforms.

Three on-disk layouts are read into one `SegmentationDataset`:

* ``yolo``  - YOLOv8-seg: ``data.yaml`` + ``<split>/images`` + ``<split>/labels/*.txt`` with lines
  ``class x1 y1 x2 y2 ...`` (coordinates normalised to [0, 1]). Data class id ``k`` becomes mask
  value ``k + 1``. A missing or empty label file means "background only", as in Ultralytics.
* ``masks`` - ``images/`` + ``masks/`` folders; masks are PNGs with the image's stem whose pixel
  values are class indices (0 = background, 255 = ignore).
* ``coco``  - a COCO JSON file (or a folder holding ``annotations.json`` / ``_annotations.coco.json``,
  the Roboflow export) with polygon or RLE segmentations.

Every sample becomes an RGB ``PIL.Image`` and a ``uint8`` mask of class indices where
``classes[0] == "background"`` and ``IGNORE_INDEX`` (255) marks pixels no loss or metric counts.

Polygon convention (same for YOLO and COCO): a vertex at continuous pixel coordinates ``(x, y)`` -
``x = x_norm * width`` with 0 at the left edge of the image - is snapped to the pixel that contains
it, ``(floor(x), floor(y))``. PIL's ``ImageDraw.polygon`` then fills the polygon through those
pixel centres: every pixel whose centre lies inside or on it, plus the pixels its slanted edges
pass through as drawn lines. Boundary pixels are thus included (a shape can be up to one pixel
larger than a strict centre-inside test), as with Ultralytics (int cast + ``cv2.fillPoly``), so masks
agree with what YOLOv8-seg trains on. Where polygons overlap, the later (line / annotation) wins.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

import numpy as np
import torch
import yaml
from PIL import Image, ImageDraw, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

DEFAULT_DATA_DIR = Path(
    os.environ.get("GARBSEG_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "garbage-seg"
)
IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")  # lossless only: JPEG would blur class ids
COCO_FILE_NAMES = ("annotations.json", "_annotations.coco.json")
CLASS_FILE_NAMES = ("classes.txt", "classes.json")
SPLIT_ALIASES = {
    "val": ("val", "valid", "validation"),
    "valid": ("valid", "val", "validation"),
    "validation": ("validation", "val", "valid"),
}
MAX_ERRORS_SHOWN = 5


class DatasetError(ValueError):
    """A dataset file or folder that cannot be used; the message names it."""


def require_classes(classes: Sequence[str], dataset: "SegmentationDataset", *, model: str = "the model") -> None:
    """Raise :class:`DatasetError` naming both class lists when ``dataset``'s differ from ``classes``."""
    if list(dataset.classes) != list(classes):
        raise DatasetError(f"{model} predicts the classes {list(classes)} but {dataset.name} is labelled with "
                           f"{list(dataset.classes)}; accuracy needs the same classes in the same order")


# ----------------------------------------------------------------------------- images


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
    try:
        with Image.open(source) as img:
            img.load()  # decode now so a truncated file fails here, not later in a worker
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises many types for undecodable files
        raise DatasetError(f"cannot decode image {label}: {exc}") from exc


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


# ----------------------------------------------------------------------------- polygons and RLE


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


# ----------------------------------------------------------------------------- samples and dataset


@dataclass(frozen=True)
class Sample:
    """One image and where its labels live.

    ``label`` is the file blamed in error messages (YOLO .txt, mask PNG or COCO JSON);
    ``annotations`` and ``size`` are only set for COCO (``(value, segmentation)`` pairs, (w, h)).
    """

    image: Path
    label: Path | None
    annotations: tuple = ()
    size: tuple[int, int] | None = None


MaskReader = Callable[[Sample, tuple[int, int]], np.ndarray]


class SegmentationDataset(Dataset):
    """Images with class-index masks; ``dataset[i]`` is ``transform(image, mask)``.

    With ``on_error="skip"`` a sample that fails to load is reported with ``warnings.warn`` and the
    next good sample is returned instead, so the length a DataLoader saw stays valid. Call
    ``validate()`` first (e.g. before an evaluation) to drop broken samples for good.

    ``cache=True`` keeps decoded samples in memory so JPEGs are decoded once. With DataLoader
    workers each process holds its own cache: call ``validate()`` before creating the loader (forked
    workers inherit the filled cache) or use ``persistent_workers=True``. ``cache_max_side`` shrinks
    every sample at load time (cached or not, so results never depend on cache state) so that its
    longer side is at most that many pixels: image bilinear, mask nearest.
    """

    def __init__(
        self,
        samples: Sequence[Sample],  # root: the split's folder (or the COCO file's folder)
        classes: Sequence[str],
        *,
        read_mask: MaskReader,
        name: str,
        root: Path,
        layout: str,
        transform: Callable | None = None,
        on_error: str = "raise",
        cache: bool = False,
        cache_max_side: int | None = None,
    ):
        _check_on_error(on_error)
        if cache_max_side is not None and cache_max_side < 1:
            raise ValueError(f"cache_max_side must be a positive int, got {cache_max_side}")
        self.samples = list(samples)
        self.classes = list(classes)
        self.read_mask = read_mask
        self.name = name
        self.root = Path(root)
        self.layout = layout
        self.transform = transform
        self.on_error = on_error
        self.cache_max_side = cache_max_side
        self._cache: dict[Path, tuple[Image.Image, np.ndarray]] | None = {} if cache else None
        self._broken: set[Path] = set()

    @property
    def image_paths(self) -> list[Path]:
        return [s.image for s in self.samples]

    @image_paths.setter
    def image_paths(self, paths: Sequence[str | os.PathLike]) -> None:
        """Keep only (and order by) these images, e.g. ``ds.image_paths = ds.image_paths[:10]``."""
        by_image = {s.image: s for s in self.samples}
        unknown = [str(p) for p in paths if Path(p) not in by_image]
        if unknown:
            raise ValueError(f"not images of {self.name}: {unknown[:MAX_ERRORS_SHOWN]}")
        self.samples = [by_image[Path(p)] for p in paths]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (
            f"SegmentationDataset(name={self.name!r}, layout={self.layout!r}, "
            f"images={len(self)}, classes={self.classes})"
        )

    def load_raw(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """The decoded RGB image and its class-index mask; raises DatasetError when broken."""
        sample = self.samples[index]
        if self._cache is not None and sample.image in self._cache:
            image, mask = self._cache[sample.image]
            return image.copy(), mask.copy()  # callers may modify what they get
        image, mask = self._decode(sample)
        if self._cache is not None:
            self._cache[sample.image] = (image, mask)
            return image.copy(), mask.copy()
        return image, mask

    def __getitem__(self, index: int):
        image, mask = self._load_or_skip(index)
        if self.transform is None:
            return image, mask
        return self.transform(image, mask)

    def validate(self) -> list[str]:
        """Load every sample once (filling the cache); returns the problems found.

        In "raise" mode the first problem raises; in "skip" mode broken samples are removed.
        """
        problems, good = [], []
        for index, sample in enumerate(self.samples):
            try:
                self.load_raw(index)
                good.append(sample)
            except DatasetError as exc:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"skipping: {exc}", stacklevel=2)
                problems.append(str(exc))
        self.samples = good
        return problems

    def iter_raw(self) -> Iterator[tuple[Image.Image, np.ndarray]]:
        """Yield ``load_raw`` for every sample, honouring ``on_error``."""
        for index in range(len(self)):
            try:
                yield self.load_raw(index)
            except DatasetError as exc:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"skipping: {exc}", stacklevel=2)

    def _decode(self, sample: Sample) -> tuple[Image.Image, np.ndarray]:
        image = load_image(sample.image)
        mask = self.read_mask(sample, image.size)
        _check_mask_values(mask, len(self.classes), sample.label or sample.image)
        if self.cache_max_side is not None:
            image, mask = _shrink_pair(image, mask, self.cache_max_side)
        return image, mask

    def _load_or_skip(self, index: int) -> tuple[Image.Image, np.ndarray]:
        if self.on_error == "raise":
            return self.load_raw(index)
        for step in range(len(self)):
            current = (index + step) % len(self)
            if self.samples[current].image in self._broken:
                continue
            try:
                return self.load_raw(current)
            except DatasetError as exc:
                self._broken.add(self.samples[current].image)
                warnings.warn(f"skipping: {exc}", stacklevel=3)
        raise DatasetError(f"every sample of {self.name} ({self.root}) failed to load")


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f'on_error must be "raise" or "skip", got {on_error!r}')


def _check_mask_values(mask: np.ndarray, num_classes: int, blame: Path) -> None:
    bad = (mask >= num_classes) & (mask != IGNORE_INDEX)
    if bad.any():
        raise DatasetError(
            f"{blame}: mask value {int(mask[bad].max())} is not a class index "
            f"(0..{num_classes - 1}) nor the ignore value {IGNORE_INDEX}"
        )


def _shrink_pair(image: Image.Image, mask: np.ndarray, max_side: int):
    width, height = image.size
    if max(width, height) <= max_side:
        return image, mask
    ratio = max_side / max(width, height)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    small_mask = Image.fromarray(mask).resize(size, Image.Resampling.NEAREST)
    return image.resize(size, Image.Resampling.BILINEAR), np.array(small_mask)


def class_pixel_counts(dataset: SegmentationDataset) -> np.ndarray:
    """Pixels per class over the whole dataset (int64, ignore pixels left out)."""
    counts = np.zeros(len(dataset.classes), dtype=np.int64)
    for _, mask in dataset.iter_raw():
        values = mask[mask != IGNORE_INDEX]
        counts += np.bincount(values.ravel(), minlength=len(counts))[: len(counts)]
    return counts


# ----------------------------------------------------------------------------- layout detection


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
        images = _list_images(folder / "images")
        return _yolo_dataset(images, names, folder, name, options)
    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        return _masks_dataset(folder, name, options)
    coco = _find_coco_json(folder)
    if coco is not None:
        return _coco_dataset(coco, name, options)
    raise DatasetError(_unknown_layout_message(folder))


def _list_images(folder: Path) -> list[Path]:
    images = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not images:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}")
    return images


def _report(problems: list[str], on_error: str, where: str) -> None:
    """Raise all construction problems at once, or warn about each in skip mode."""
    if not problems:
        return
    if on_error == "raise":
        shown = "\n  ".join(problems[:MAX_ERRORS_SHOWN])
        more = len(problems) - MAX_ERRORS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise DatasetError(f"{len(problems)} problem(s) in {where}:\n  {shown}{tail}")
    for problem in problems:
        warnings.warn(f"skipping: {problem}", stacklevel=4)


# ----------------------------------------------------------------------------- YOLOv8-seg


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


def _yolo_root(yaml_path: Path, split: str | None, options: dict) -> SegmentationDataset:
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


def _images_from_entry(entry: Path, yaml_path: Path) -> list[Path]:
    if entry.is_dir():
        return _list_images(entry)
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


# ----------------------------------------------------------------------------- image + mask folders


def _masks_dataset(folder: Path, name: str, options: dict) -> SegmentationDataset:
    images = _list_images(folder / "images")
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
    try:
        with Image.open(path) as img:
            img.load()
            return _mask_array(img, path)
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"cannot decode mask {path}: {exc}") from exc


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


# ----------------------------------------------------------------------------- COCO


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


# ----------------------------------------------------------------------------- transforms


def _as_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """int -> square (h, w); (h, w) as given; None -> keep the input size."""
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


def _image_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """uint8 3xHxW tensor from a PIL image or an HxWx3 uint8 array."""
    if isinstance(image, Image.Image):
        return TF.pil_to_tensor(_to_rgb(image))
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def _mask_tensor(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.array(mask, dtype=np.uint8, copy=True)).unsqueeze(0)


def _normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    return TF.normalize(image.float().div_(255.0), list(mean), list(std))


def _resize_image(image: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is None or tuple(image.shape[-2:]) == size:
        return image
    return TF.resize(image, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)


def _resize_mask(mask: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is None or tuple(mask.shape[-2:]) == size:
        return mask
    # NEAREST_EXACT samples pixel centres like bilinear does; plain NEAREST shifts by half a pixel.
    return TF.resize(mask, list(size), interpolation=InterpolationMode.NEAREST_EXACT)


def normalize_image(
    image: Image.Image | np.ndarray,
    size: int | Sequence[int] | None = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Resize (int = square, (h, w), None = keep) and normalise to a float 3xHxW tensor."""
    return _normalize(_resize_image(_image_tensor(image), _as_size(size)), mean, std)


class EvalTransform:
    """Resize image (bilinear) and mask (nearest) to ``size`` and normalise; no randomness."""

    def __init__(self, size: int | Sequence[int] | None = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size, self.mean, self.std = _as_size(size), tuple(mean), tuple(std)

    def __call__(self, image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        tensor = normalize_image(image, self.size, self.mean, self.std)
        labels = _resize_mask(_mask_tensor(mask), tuple(tensor.shape[-2:]))
        return tensor, labels[0].long()

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, mean={self.mean}, std={self.std})"


def _uniform(low: float, high: float) -> float:
    # Drawn from torch's RNG so torch.manual_seed and DataLoader worker seeding cover it.
    return low + (high - low) * float(torch.rand(()))


def _coin(probability: float) -> bool:
    return float(torch.rand(())) < probability


class TrainTransform:
    """Random augmentation applied identically to image and mask.

    Square resize to ``resize``, random affine (rotation in degrees, scale range, translation as a
    fraction of the side; image bilinear filled with 0, mask nearest filled with IGNORE_INDEX so
    uncovered areas are not scored), random ``size`` crop, flips, colour jitter on the image only
    (brightness/contrast/saturation factors in [1 - c, 1 + c]), then normalisation.
    """

    def __init__(
        self,
        size: int = 224,
        resize: int = 256,
        hflip: float = 0.5,
        vflip: float = 0.0,
        rotation: float = 15.0,
        scale: tuple[float, float] = (0.8, 1.2),
        translate: float = 0.1,
        color_jitter: float = 0.2,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        if size > resize:
            raise ValueError(f"crop size {size} is larger than the resize {resize}")
        if not (0 < scale[0] <= scale[1]):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        for name, p in (("hflip", hflip), ("vflip", vflip)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability, got {p}")
        self.size, self.resize = size, resize
        self.hflip, self.vflip = hflip, vflip
        self.rotation, self.scale, self.translate = rotation, tuple(scale), translate
        self.color_jitter = color_jitter
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        side = (self.resize, self.resize)
        img = _resize_image(_image_tensor(image), side)
        labels = _resize_mask(_mask_tensor(mask), side)
        img, labels = self._random_affine(img, labels)
        img, labels = self._random_crop(img, labels)
        if _coin(self.hflip):
            img, labels = TF.horizontal_flip(img), TF.horizontal_flip(labels)
        if _coin(self.vflip):
            img, labels = TF.vertical_flip(img), TF.vertical_flip(labels)
        img = self._jitter(img)
        return _normalize(img, self.mean, self.std), labels[0].long()

    def _random_affine(self, img: torch.Tensor, labels: torch.Tensor):
        if self.rotation == 0 and self.scale == (1.0, 1.0) and self.translate == 0:
            return img, labels
        height, width = img.shape[-2:]
        params = dict(
            angle=_uniform(-self.rotation, self.rotation),
            translate=[_uniform(-self.translate, self.translate) * width,
                       _uniform(-self.translate, self.translate) * height],
            scale=_uniform(*self.scale),
            shear=[0.0, 0.0],
        )
        # One parameter set for both: the same sampling grid keeps them pixel-aligned.
        img = TF.affine(img, **params, interpolation=InterpolationMode.BILINEAR, fill=0)
        labels = TF.affine(labels, **params, interpolation=InterpolationMode.NEAREST, fill=IGNORE_INDEX)
        return img, labels

    def _random_crop(self, img: torch.Tensor, labels: torch.Tensor):
        height, width = img.shape[-2:]
        top = int(torch.randint(0, height - self.size + 1, ()))
        left = int(torch.randint(0, width - self.size + 1, ()))
        crop = dict(top=top, left=left, height=self.size, width=self.size)
        return TF.crop(img, **crop), TF.crop(labels, **crop)

    def _jitter(self, img: torch.Tensor) -> torch.Tensor:
        if self.color_jitter <= 0:
            return img
        low, high = max(0.0, 1 - self.color_jitter), 1 + self.color_jitter
        img = TF.adjust_brightness(img, _uniform(low, high))
        img = TF.adjust_contrast(img, _uniform(low, high))
        return TF.adjust_saturation(img, _uniform(low, high))

    def __repr__(self) -> str:
        return (
            f"TrainTransform(size={self.size}, resize={self.resize}, hflip={self.hflip}, "
            f"vflip={self.vflip}, rotation={self.rotation}, scale={self.scale}, "
            f"translate={self.translate}, color_jitter={self.color_jitter})"
        )

"""Writing predicted masks as labels other tools read: COCO (RLE), YOLOv8-seg (polygons), CVAT masks.

The writers sit beside the readers they must round-trip with: a COCO file written here loads back
through :mod:`.coco` (RLE decoded by :mod:`.rasterize`) pixel for pixel; YOLO polygons load back
through :mod:`.yolo` (the rasteriser's pixel convention is why vertices are written at pixel
centres); the CVAT "Segmentation mask 1.1" zip holds one colour PNG per image and ``labelmap.txt``,
and ``read_cvat_zip`` reads it back.

``LabelExporter`` streams: each photo's files are written as it comes (a 10,000-photo folder is
never held in memory, only the COCO run-length strings are), and ``finish`` writes the files that
list every photo. Under torchrun each rank adds its own photos and ``finish`` gathers on rank 0.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import yaml
from PIL import Image

from ..core import distributed
from ..core.errors import GarbsegError
from ..core.files import atomic_write

FORMATS = ("coco", "yolo", "cvat")
COCO_FILE = "coco.json"
CVAT_FILE = "cvat.zip"
CVAT_STAGING = ".cvat-staging"


class ExportError(GarbsegError):
    """An export format garbseg does not write, or an export it cannot read back."""


def parse_formats(text: str | Iterable[str] | None) -> list[str]:
    """``"coco,yolo"`` -> ``["coco", "yolo"]``; unknown names raise ExportError."""
    if not text:
        return []
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))


# --- COCO run-length encoding -------------------------------------------------------------------

def mask_to_runs(mask: np.ndarray) -> list[int]:
    """Alternating background/foreground run lengths of a bool mask in column-major order (COCO's)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat.size and flat[0] else runs  # runs start with background


def encode_rle_string(runs: Sequence[int]) -> str:
    """COCO's compressed RLE string (pycocotools' ``rleToString``): the inverse of ``decode_rle_string``.

    From the fourth run on a run is stored as the difference to the run two places back; each number
    is written in 5-bit groups, least significant first, as ``chr(48 + group)`` with 0x20 marking
    that another group follows (0x10 of the last group is the sign).
    """
    out = []
    for i, run in enumerate(runs):
        value = int(run) - (int(runs[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic shift: negative differences end at -1
            more = value != -1 if group & 0x10 else value != 0
            out.append(chr(48 + (group | (0x20 if more else 0))))
    return "".join(out)


def mask_to_rle(mask: np.ndarray) -> dict:
    """A COCO RLE segmentation ``{"size": [h, w], "counts": str}`` of a bool mask."""
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": encode_rle_string(mask_to_runs(mask))}


# --- YOLOv8-seg polygons ------------------------------------------------------------------------

def mask_to_polygons(mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(class value, N x 2 pixel coordinates)`` outlines of every region of every class, largest first.

    Outer boundaries only (YOLO polygons have no holes); drawn largest first, a region inside another
    class's region is painted over it, as ``rasterize_polygons`` paints later polygons last.
    Vertices are the boundary pixels' centres (x + 0.5), so the reader's ``floor`` lands on them.
    """
    found = []
    for value in np.unique(mask):
        if value == 0:
            continue
        binary = (mask == value).astype(np.uint8)
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            points = contour.reshape(-1, 2).astype(np.float64) + 0.5
            while len(points) < 3:  # a one- or two-pixel region still needs a polygon
                points = np.concatenate([points, points[:1]])
            found.append((cv2.contourArea(contour), int(value), points))
    found.sort(key=lambda item: -item[0])
    return [(value, points) for _, value, points in found]


def yolo_label_text(mask: np.ndarray) -> str:
    """The label file of one mask: ``class x1 y1 ...`` lines, normalised, data class = mask value - 1."""
    height, width = mask.shape
    lines = []
    for value, points in mask_to_polygons(mask):
        coords = " ".join(f"{x / width:.6f} {y / height:.6f}" for x, y in points)
        lines.append(f"{value - 1} {coords}")
    return "\n".join(lines) + ("\n" if lines else "")


# --- CVAT "Segmentation mask 1.1" ---------------------------------------------------------------

def voc_colours(num_classes: int) -> np.ndarray:
    """The Pascal VOC colour map (CVAT's default for mask exports): class bits spread over R, G, B."""
    colours = np.zeros((num_classes, 3), dtype=np.uint8)
    for index in range(num_classes):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours[index] = (r, g, b)
    return colours


def cvat_labelmap(classes: Sequence[str]) -> str:
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b) in zip(classes, voc_colours(len(classes)))]
    return "\n".join(lines) + "\n"


def read_cvat_zip(source: str | os.PathLike | bytes) -> tuple[list[str], dict[str, np.ndarray]]:
    """Classes (from ``labelmap.txt``) and class-index masks by image name, from a CVAT mask zip."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        classes, colours = [], []
        for line in archive.read("labelmap.txt").decode("utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                name, rgb = line.split(":")[:2]
                classes.append(name)
                colours.append(tuple(int(v) for v in rgb.split(",")))
        lookup = {colour: index for index, colour in enumerate(colours)}
        masks = {}
        for entry in archive.namelist():
            if entry.startswith("SegmentationClass/") and entry.endswith(".png"):
                rgb = np.array(Image.open(io.BytesIO(archive.read(entry))).convert("RGB"))
                mask = np.zeros(rgb.shape[:2], dtype=np.uint8)
                for colour, index in lookup.items():
                    mask[(rgb == colour).all(axis=-1)] = index
                masks[entry[len("SegmentationClass/"):-len(".png")]] = mask
    return classes, masks


# --- the streaming exporter ---------------------------------------------------------------------

class LabelExporter:
    """Writes one photo's labels at a time into ``out``; ``finish()`` writes the files that list them all.

    Layout under ``out`` (``key`` is the photo's name relative to the input, without suffix):
    ``images/<key><suffix>`` (the photo, hard-linked or copied: the YOLO and COCO readers need it
    beside the labels), ``labels/<key>.txt`` + ``data.yaml`` (yolo), ``coco.json`` (coco),
    ``cvat.zip`` (cvat).
    """

    def __init__(self, out: str | os.PathLike, classes: Sequence[str], formats: Iterable[str]):
        self.out = Path(out)
        self.classes = list(classes)
        self.formats = parse_formats(list(formats))
        self._coco_images: list[dict] = []
        self._coco_annotations: list[dict] = []
        self._cvat_keys: list[str] = []

    def add(self, index: int, image_path: str | os.PathLike, key: str, mask: np.ndarray) -> None:
        """Export the labels of photo number ``index`` (its place among all photos, for COCO ids)."""
        if not self.formats:
            return
        image_path = Path(image_path)
        file_name = f"{key}{image_path.suffix.lower()}"
        if {"coco", "yolo"} & set(self.formats):
            _link_or_copy(image_path, self.out / "images" / file_name)
        if "yolo" in self.formats:
            text = yolo_label_text(mask)
            atomic_write(self.out / "labels" / f"{key}.txt", lambda tmp: tmp.write_text(text))
        if "coco" in self.formats:
            height, width = mask.shape
            self._coco_images.append({"id": index + 1, "file_name": file_name, "width": width, "height": height})
            for value in np.unique(mask):
                if value == 0:
                    continue
                region = mask == value
                ys, xs = np.nonzero(region)
                self._coco_annotations.append({
                    "image_id": index + 1, "category_id": int(value), "segmentation": mask_to_rle(region),
                    "area": int(region.sum()), "iscrowd": 0,
                    "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]})
        if "cvat" in self.formats:
            rgb = voc_colours(len(self.classes))[mask]
            path = self.out / CVAT_STAGING / "SegmentationClass" / f"{key}.png"
            atomic_write(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG"))
            self._cvat_keys.append(key)

    def finish(self) -> list[Path]:
        """Write the files that list every photo (on rank 0, from every rank's share); the paths written."""
        parts = distributed.gather_to_main((self._coco_images, self._coco_annotations, self._cvat_keys))
        distributed.barrier()  # every rank's per-photo files are on disk before rank 0 packs them
        if parts is None:
            return []
        written = []
        if "yolo" in self.formats:
            config = {"path": ".", "train": "images", "val": "images",
                      "names": {i: name for i, name in enumerate(self.classes[1:])}}
            text = yaml.safe_dump(config, sort_keys=False)
            atomic_write(self.out / "data.yaml", lambda tmp: tmp.write_text(text))
            written.append(self.out / "data.yaml")
        if "coco" in self.formats:
            written.append(self._write_coco([i for p in parts for i in p[0]], [a for p in parts for a in p[1]]))
        if "cvat" in self.formats:
            written.append(self._write_cvat(sorted(k for p in parts for k in p[2])))
        return written

    def _write_coco(self, images: list[dict], annotations: list[dict]) -> Path:
        images.sort(key=lambda info: info["id"])
        annotations.sort(key=lambda ann: (ann["image_id"], ann["category_id"]))
        for number, ann in enumerate(annotations, start=1):
            ann["id"] = number
        coco = {"info": {"description": "garbseg predictions"}, "images": images, "annotations": annotations,
                "categories": [{"id": i, "name": name}
                               for i, name in enumerate(self.classes) if i > 0]}
        path = self.out / COCO_FILE
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(coco)))
        return path

    def _write_cvat(self, keys: list[str]) -> Path:
        staging = self.out / CVAT_STAGING

        def write(tmp: Path) -> None:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("labelmap.txt", cvat_labelmap(self.classes))
                archive.writestr("ImageSets/Segmentation/default.txt", "".join(f"{k}\n" for k in keys))
                for key in keys:
                    archive.write(staging / "SegmentationClass" / f"{key}.png", f"SegmentationClass/{key}.png")

        path = self.out / CVAT_FILE
        atomic_write(path, write)
        shutil.rmtree(staging, ignore_errors=True)
        return path


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (no second copy of a photo), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)

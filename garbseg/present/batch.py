"""Segmenting many photos into files: masks, overlays, a summary CSV and label exports.

Photos are read, segmented and written one at a time, so a folder of 10,000 photos never sits in
memory (only its list of paths and one small summary row per photo). Outputs keep each photo's
path relative to the inputs (``a/photo.jpg`` and ``b/photo.jpg`` give ``a/photo_mask.png`` and
``b/photo_mask.png``). Under torchrun each rank takes every world_size-th photo, writes its own
files, and rank 0 writes the files that list them all (summary CSV, COCO JSON, CVAT zip).

``bundle_zip`` is the same writing for photos already in memory (the Segment page's download).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import distributed
from ..core.errors import GarbsegError
from ..core.files import atomic_write
from ..data import DatasetError, list_images, load_image
from ..data.export import LabelExporter
from .overlays import class_shares, mask_to_png, overlay

SUMMARY_FILE = "summary.csv"


class BatchInputError(GarbsegError):
    """An input path that is neither an image file nor a folder holding images."""


@dataclass(frozen=True)
class PlannedImage:
    path: Path  # the photo as given (or found in a given folder)
    key: str  # its output name: path relative to the inputs' common folder, no suffix, '/'-separated


def plan_images(inputs: Iterable[str | os.PathLike]) -> list[PlannedImage]:
    """Every photo named by ``inputs`` (files, or folders searched recursively) with a unique output key.

    Keys are relative to the folder the inputs share, so photos of the same name in different folders
    keep apart; two photos differing only in suffix (``x.jpg``, ``x.png``) get the suffix in the key.
    """
    files: list[Path] = []
    anchors: list[str] = []
    for given in map(Path, inputs):
        if given.is_dir():
            files += list_images(given)
            anchors.append(os.path.abspath(given))
        elif given.exists():
            files.append(given)
            anchors.append(os.path.dirname(os.path.abspath(given)))
        else:
            raise BatchInputError(f"{given} does not exist")
    base = os.path.commonpath(anchors) if anchors else "."
    plan, taken, seen = [], set(), set()
    for path in files:
        absolute = os.path.abspath(path)
        if absolute in seen:
            continue
        seen.add(absolute)
        relative = Path(os.path.relpath(absolute, base)).with_suffix("").as_posix()
        key, number = relative, 1
        if key in taken:
            key = f"{relative}_{path.suffix.lstrip('.').lower()}"
        while key in taken:
            number += 1
            key = f"{relative}_{number}"
        taken.add(key)
        plan.append(PlannedImage(path, key))
    return plan


def summary_row(item: PlannedImage, mask: np.ndarray, classes: Sequence[str], ms: float) -> dict:
    """One CSV row: the photo, its mask file, the classes found and each class's share of the pixels."""
    shares = class_shares(mask, list(classes))
    found = [name for name in classes[1:] if shares[name] > 0]
    return {"image": str(item.path), "mask": f"{item.key}_mask.png", "width": mask.shape[1],
            "height": mask.shape[0], "classes_found": ";".join(found),
            **{f"share_{name}": round(shares[name], 6) for name in classes}, "ms": round(ms, 1), "error": ""}


@dataclass
class BatchResult:
    rows: list[dict]  # every photo's summary row on rank 0 (this rank's only elsewhere), in input order
    failures: int  # photos that could not be read (on rank 0: over all ranks)
    written: list[Path]  # summary CSV and the export files (rank 0)


def predict_images(predictor, plan: Sequence[PlannedImage], out: str | os.PathLike, *, alpha: float = 0.5,
                   export: Iterable[str] = (), progress: bool = True,
                   on_image: Callable[[PlannedImage, dict], None] | None = None) -> BatchResult:
    """Segment this rank's share of ``plan`` into ``out``: ``<key>_mask.png`` (class ids, palette
    PNG), ``<key>_overlay.png``, the labels in each ``export`` format, and ``summary.csv``.

    A photo that cannot be read becomes a row with its error (``on_image`` hears of it too), not a stop.
    """
    out = Path(out)
    classes = list(predictor.classes)
    exporter = LabelExporter(out, classes, export)
    rows = []
    share = distributed.shard(list(enumerate(plan)))
    for index, item in tqdm(share, desc="predict", unit="img", disable=not progress):
        try:
            image = load_image(item.path)
        except DatasetError as exc:
            row = {"image": str(item.path), "error": str(exc)}
        else:
            mask = predictor.predict(image)
            write_prediction(out, item.key, image, mask, len(classes), alpha)
            exporter.add(index, item.path, item.key, mask)
            row = summary_row(item, mask, classes, predictor.last_timing.total_ms)
        rows.append((index, row))
        if on_image:
            on_image(item, row)
    parts = distributed.gather_to_main(rows)
    written = exporter.finish()
    if parts is None:
        return BatchResult([row for _, row in rows], sum(bool(r["error"]) for _, r in rows), [])
    every = [row for _, row in sorted((pair for part in parts for pair in part), key=lambda pair: pair[0])]
    written.insert(0, write_summary(out / SUMMARY_FILE, every, classes))
    return BatchResult(every, sum(bool(r["error"]) for r in every), written)


def write_prediction(out: Path, key: str, image: Image.Image, mask: np.ndarray, num_classes: int,
                     alpha: float) -> Path:
    """``<key>_mask.png`` and ``<key>_overlay.png`` under ``out``; returns the mask's path."""
    mask_path = out / f"{key}_mask.png"
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    mask_to_png(mask, num_classes).save(mask_path)
    overlay(image, mask, num_classes, alpha=alpha).save(out / f"{key}_overlay.png")
    return mask_path


def write_summary(path: Path, rows: list[dict], classes: Sequence[str]) -> Path:
    columns = ["image", "mask", "width", "height", "classes_found", *(f"share_{c}" for c in classes), "ms", "error"]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)
    return path


def bundle_zip(results: Sequence[tuple[str, Image.Image, str, list[str], np.ndarray]], *, alpha: float = 0.5,
               export: Iterable[str] = ("coco", "yolo", "cvat")) -> bytes:
    """One zip of every mask, overlay and label set, a folder per model, each as ``predict --export``
    writes it. ``results``: ``(photo name, photo, model, its classes, mask)`` rows, as a page shows them."""
    export = list(export)
    by_model: dict[str, list] = {}
    for row in results:
        by_model.setdefault(row[2], []).append(row)
    with tempfile.TemporaryDirectory(prefix="garbseg-bundle-") as tmp:
        root = Path(tmp)
        for model, rows in by_model.items():
            out, classes = root / "bundle" / model, rows[0][3]
            exporter = LabelExporter(out, classes, export)
            summary, taken = [], set()
            for index, (name, image, _, _, mask) in enumerate(rows):
                key, number = Path(name).stem, 1
                while key in taken:  # two uploads of one name must not share files
                    number += 1
                    key = f"{Path(name).stem}_{number}"
                taken.add(key)
                item = PlannedImage(root / "photos" / model / f"{key}.png", key)
                item.path.parent.mkdir(parents=True, exist_ok=True)
                image.save(item.path)  # the decoded photo, as the labels describe it
                write_prediction(out, key, image, mask, len(classes), alpha)
                exporter.add(index, item.path, key, mask)
                summary.append(summary_row(item, mask, classes, 0.0) | {"image": name})
            exporter.finish()
            write_summary(out / SUMMARY_FILE, summary, classes)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted((root / "bundle").rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(root / "bundle").as_posix())
        return buffer.getvalue()

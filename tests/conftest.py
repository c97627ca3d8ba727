"""Shared fixtures: a tiny synthetic YOLOv8-seg data set (fast), and the real shared one (if present)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("GARBSEG_DATA", ROOT.parent / "shared" / "data" / "garbage-seg"))
TINY_CLASSES = ["red", "blue"]
TINY_COLOURS = {0: (220, 30, 30), 1: (30, 30, 220)}

requires_real_data = pytest.mark.skipif(not (REAL_DATA / "data.yaml").is_file(),
                                        reason=f"shared data set not found at {REAL_DATA}")

torch.set_num_threads(min(2, os.cpu_count() or 1))


def make_yolo_set(root: Path, n_train: int = 8, n_val: int = 4, size: int = 64, seed: int = 0) -> Path:
    """A YOLOv8-seg set whose objects are coloured by class, so a model can learn it in a few steps."""
    rng = np.random.default_rng(seed)
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(TINY_CLASSES))
    (root / "data.yaml").write_text(f"path: .\ntrain: train/images\nval: val/images\nnames:\n{names}\n")
    for split, count in (("train", n_train), ("val", n_val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = Image.new("RGB", (size, size), (128, 128, 128))
            draw = ImageDraw.Draw(image)
            cls = int(rng.integers(0, len(TINY_CLASSES)))
            x0, y0 = rng.uniform(0.05, 0.4, 2)
            x1, y1 = x0 + rng.uniform(0.3, 0.5), y0 + rng.uniform(0.3, 0.5)
            poly = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            draw.polygon([(x * size, y * size) for x, y in poly], fill=TINY_COLOURS[cls])
            image.save(root / split / "images" / f"img{i}.png")
            coords = " ".join(f"{x:.5f} {y:.5f}" for x, y in poly)
            (root / split / "labels" / f"img{i}.txt").write_text(f"{cls} {coords}\n")
    return root


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    """The files under ``folder`` as zip bytes, their names under ``prefix`` (as an upload would be)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_yolo_set(tmp_path_factory.mktemp("tiny") / "set")


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A real (tiny) training run: two epochs of LR-ASPP at 64 px."""
    from garbseg.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "lraspp"
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), out=str(out), epochs=2,
                      batch_size=4, size=64, resize=64, lr=1e-3, bf16=False)
    train(cfg, progress=False, log=lambda s: None)
    return out

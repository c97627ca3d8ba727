"""Does a runtime compute the same segmentation as the eager model? Measured once, then cached.

Float runtimes must agree with eager float32 on the argmax of at least ``PARITY_THRESHOLD`` of the
pixels of real images (val split). Int8 runtimes are a different model on purpose, so for them the
mIoU on the val split is measured for both and the change reported; ``auto`` accepts an int8
runtime only when it loses at most ``MAX_INT8_MIOU_DROP``. Results are cached next to the exported
files, keyed by weights, input size, runtime and the runtime package's version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ...core.files import read_json, update_json
from ...data import load_dataset
from ..evaluate import confusions, miou_of
from ..processing import upsample_argmax
from .base import BuildContext, Engine
from .cache import model_dir
from .calibration import preprocess_paths, split_images

PARITY_THRESHOLD = 0.995  # share of pixels whose class must match eager float32
MAX_INT8_MIOU_DROP = 0.01  # one mIoU point
PARITY_IMAGES = 16


@dataclass
class Reference:
    """Eager outputs on the check images, computed once per model and size and shared by all checks."""

    images: torch.Tensor  # N x 3 x S x S, preprocessed
    argmax: torch.Tensor  # N x S x S eager classes
    masks: list | None  # val label masks (full resolution) when the data's classes fit the model
    eager_miou: float | None
    source: str
    parity_count: int = field(default=PARITY_IMAGES)


def _synthetic_images(ctx: BuildContext, n: int = 4) -> torch.Tensor:
    # Smooth random colour fields: weaker than real photos, used only when no data set is present.
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, 8, 8, generator=g) * 4 - 2
    return torch.nn.functional.interpolate(low, size=(ctx.size, ctx.size), mode="bilinear", align_corners=False)


def build_reference(ctx: BuildContext, eager: Engine, *, with_miou: bool) -> Reference:
    masks, source, eager_miou = None, "synthetic", None
    paths = split_images(ctx.data_dir, "val") or split_images(ctx.data_dir, "train")
    if with_miou and paths:
        try:
            ds = load_dataset(ctx.data_dir, "val")
            if list(ds.classes) == list(ctx.loaded.classes):
                masks = [ds.load_raw(i)[1] for i in range(len(ds))]
                paths = list(ds.image_paths)
        except Exception:
            masks = None
    if paths:
        source = f"{ctx.data_dir}: {len(paths)} images"
        chosen = paths if masks is not None else paths[:PARITY_IMAGES]
        images = torch.from_numpy(np.concatenate(preprocess_paths(chosen, ctx)))
    else:
        images = _synthetic_images(ctx)
    # One eager pass serves both the classes at input size and the val confusion matrices.
    argmax, matrices = [], []
    for i in range(len(images)):
        logits = eager(images[i : i + 1])
        argmax.append(logits.argmax(1))
        if masks is not None:
            matrices += confusions(lambda _, out=logits: out, [(None, [masks[i]])], len(ctx.loaded.classes))
    if masks is not None:
        eager_miou = float(miou_of(matrices, ctx.loaded.classes))
    return Reference(images, torch.cat(argmax), masks, eager_miou, source)


def _miou(ctx: BuildContext, engine: Engine, images: torch.Tensor, masks: list) -> float:
    batches = ((images[i : i + 1], [mask]) for i, mask in enumerate(masks))
    return float(miou_of(confusions(engine, batches, len(ctx.loaded.classes)), ctx.loaded.classes))


def _classes_at_input_size(engine: Engine, image: torch.Tensor) -> torch.Tensor:
    """Class ids at the input size, as eager's: engines may return logits at the head's resolution."""
    size = image.shape[-1]
    return torch.from_numpy(upsample_argmax(engine(image), size, size)).long()


def _checks_file(ctx: BuildContext):
    return model_dir(ctx.loaded) / f"checks-{ctx.size}.json"


def cached_check(ctx: BuildContext, runtime: str, version: str) -> dict | None:
    entry = read_json(_checks_file(ctx)).get(runtime)
    return entry if entry and entry.get("version") == version else None


def run_check(ctx: BuildContext, engine: Engine, reference: Reference, version: str) -> dict:
    """Agreement with eager (and for int8 the val mIoU change); stored in the cache."""
    t0 = time.perf_counter()
    n = min(len(reference.images), reference.parity_count)
    preds = torch.stack([_classes_at_input_size(engine, reference.images[i : i + 1]) for i in range(n)])
    agreement = float((preds == reference.argmax[:n]).float().mean())
    result = {"runtime": engine.name, "version": version, "agreement": agreement, "images": n,
              "source": reference.source}
    if engine.int8:
        if reference.masks is not None:
            miou = _miou(ctx, engine, reference.images, reference.masks)
            result.update(eager_miou=reference.eager_miou, miou=miou, miou_delta=miou - reference.eager_miou)
            result["passed"] = result["miou_delta"] >= -MAX_INT8_MIOU_DROP
        else:
            result["passed"] = False
            result["reason"] = "no labelled val split with this model's classes to measure the mIoU change"
    else:
        result["passed"] = agreement >= PARITY_THRESHOLD
    result["seconds"] = round(time.perf_counter() - t0, 2)
    update_json(_checks_file(ctx), engine.name, result)
    return result

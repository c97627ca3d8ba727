"""Model cards: what a checkpoint says about itself (architecture, initialisation, data, recipe,
metrics, provenance), read from its metadata without loading the weights."""

from __future__ import annotations

import math
from pathlib import Path

from safetensors import safe_open

from .backbone_init import began_from_imagenet
from .checkpoints import read_metadata
from .registry import default_output_stride, parse_model_name
from .zoo import UNTRAINED

# Recipe fields worth showing first; the rest of the recipe follows in the card's full listing.
RECIPE_KEYS = ("epochs", "batch_size", "lr", "schedule", "warmup_epochs", "weight_decay", "size", "resize",
               "aux_loss", "bf16", "seed")
METRIC_LABELS = {"miou": "mIoU", "pixel_accuracy": "pixel accuracy", "precision": "precision (weighted)",
                 "recall": "recall (weighted)", "num_images": "validation images"}
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def stored_parameters(path: str | Path) -> int:
    """Learnable parameters in a safetensors file, from tensor shapes alone (norm statistics excluded)."""
    total = 0
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            if not key.endswith(_BUFFERS):
                total += math.prod(f.get_slice(key).get_shape())
    return total


def continuation_chain(record: dict | None) -> list[dict]:
    """The runs a checkpoint continued (its ``continued_from`` record, which nests), earliest first."""
    chain = []
    while record:
        chain.insert(0, record)
        record = record.get("continued_from")
    return chain


def first_initialisation(meta) -> str:
    """How a checkpoint's weights began: the first run's ``backbone_init`` (a continued run's own is only
    its config's default)."""
    earlier = continuation_chain(meta.continued_from)
    return (earlier[0].get("backbone_init") if earlier else None) or meta.backbone_init


def started_from_imagenet(meta) -> bool:
    """Whether the checkpoint's backbone began from its own ImageNet weights (see ``began_from_imagenet``)."""
    return began_from_imagenet(first_initialisation(meta))


def data_seen(data: dict, recipe: dict, earlier: list[dict]) -> str:
    """What the weights were trained on, in words: the labelled split, any pseudo-labelled extra set
    (photos, share per epoch), copy-paste, the teacher and the blends it alone taught; earlier runs
    that only saw the split first."""
    primary, _, extra_in_name = data.get("name", "").partition(" + ")  # "garbage-seg/train + trashnet/train"
    parts = [f"{primary or 'train split'} ({data.get('train_images', '?')} photos)"]
    if data.get("extra_images"):
        extra = data.get("extra_name") or extra_in_name or "extra set"
        teachers = data.get("extra_labelled_by")
        parts.append(f"{extra} pseudo-labels ({data['extra_images']} photos, "
                     f"{data.get('extra_per_epoch')} per epoch"
                     + (f"; labelled by {', '.join(teachers)}" if teachers else "") + ")")
    text = " + ".join(parts)
    if recipe.get("copy_paste"):
        text += f"; copy-paste on {recipe['copy_paste']:.0%} of photos"
    teacher = recipe.get("teacher")
    if isinstance(teacher, dict):
        members = teacher.get("members") or [teacher]  # an ensemble of teachers records each one
        text += "; distilled from " + ("" if len(members) == 1 else "the mean of ") + ", ".join(
            f"{m.get('model')} at {m.get('input_size')} px (val mIoU {m.get('val_miou') or float('nan'):.3f})"
            for m in members)
        if recipe.get("distill_mixup"):
            text += f", which alone taught the {recipe['distill_mixup']:.0%} of photos blended with another"
    alone = [run for run in earlier if not _saw_extra_set(run)]
    if alone and data.get("extra_images"):
        which = "the runs" if len(alone) == len(earlier) else f"{len(alone)} of the {len(earlier)} runs"
        text += f"; {which} it continued saw {primary or 'the train split'} only"
    return text


def _saw_extra_set(run: dict) -> bool:
    # Continuation records carry the run's data from 2026-12 on; the older ones without it all come from
    # runs on the labelled split alone (the pseudo-labelled set arrived with issue 14).
    return " + " in (run.get("data") or "")


def model_card(name: str, checkpoint: str | Path | None) -> dict:
    """The card of one model: sections of plain values, ready to print or tabulate."""
    backbone, head = parse_model_name(name)
    card = {"name": name, "trained": checkpoint is not None,
            "architecture": {"backbone": backbone, "head": head, "output_stride": default_output_stride(name)}}
    if checkpoint is None:
        card["status"] = f"{UNTRAINED}: no checkpoint ships for this model"
        return card
    path = Path(checkpoint)
    meta = read_metadata(path)
    card["size_mb"] = path.stat().st_size / 2**20
    card["status"] = f"weights: {path.name} ({card['size_mb']:.1f} MB, {meta.stored_dtype or '?'})"
    card["architecture"].update({
        "output_stride": meta.model_kwargs.get("output_stride", card["architecture"]["output_stride"]),
        "parameters": stored_parameters(path),
        "classes": meta.classes,
        "input_size": meta.input_size,
        "normalization": meta.normalization,
    })
    earlier = continuation_chain(meta.continued_from)
    card["initialisation"] = first_initialisation(meta)
    if earlier:  # a run that continued others: say where the weights had been before, earliest first
        card["initialisation"] += "; continued from " + ", then ".join(
            f"{e.get('epoch')} epochs on {e.get('machine')} (val mIoU {e.get('val_miou') or float('nan'):.3f})"
            for e in earlier)
    card["data"] = meta.data
    card["data_seen"] = data_seen(meta.data, meta.recipe, earlier)
    recipe = meta.recipe
    card["recipe"] = {k: recipe[k] for k in RECIPE_KEYS if k in recipe}
    card["recipe_full"] = recipe
    metrics = meta.metrics
    card["metrics"] = {label: metrics[k] for k, label in METRIC_LABELS.items() if metrics.get(k) is not None}
    card["per_class_iou"] = metrics.get("per_class_iou", {})
    card["training_metrics"] = meta.training_metrics or None
    card["provenance"] = {k: getattr(meta, k) for k in ("epoch", "train_seconds", "device", "world_size", "commit",
                                                     "torch_version", "exported_from", "fp16_miou_delta")
                          if getattr(meta, k) is not None}
    card["machine"] = meta.machine or meta.device  # what trained it, e.g. "CPU AMD EPYC, 2 threads"
    machines = [e.get("machine") for e in earlier] + [card["machine"]]
    card["machine"] = ", then ".join(dict.fromkeys(m for m in machines if m))  # each machine once, in order
    return card

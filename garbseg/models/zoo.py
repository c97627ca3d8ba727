"""The model zoo: every registered model, whether weights ship for it, and the one way to open a
model by name (``open_model``): its shipped checkpoint, or random weights clearly flagged as untrained.

The app, the CLI and ``benchmarks/`` all ask here, so they share one answer to "what do I get for
this name?".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoints import (LoadedModel, load_checkpoint, make_metadata, read_metadata, shipped_checkpoint,
                          shipped_checkpoints)
from .metadata import CheckpointError
from .registry import BACKBONES, HEADS, build_model, default_output_stride, list_models, parse_model_name

# The shared data set's classes; used for untrained models when no labelled set is configured.
DEFAULT_CLASSES = ["background", "biological", "cardboard", "glass", "metal", "paper", "plastic"]
UNTRAINED = "untrained (random weights)"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    backbone: str
    head: str
    checkpoint: Path | None

    @property
    def trained(self) -> bool:
        return self.checkpoint is not None

    @property
    def label(self) -> str:
        return model_label(self.name, self.trained)


def compose_name(backbone: str, head: str) -> str:
    """``"<backbone>-<head>"``; raises ``UnknownModelError`` for names that are not registered."""
    name = f"{backbone}-{head}"
    parse_model_name(name)
    return name


def model_label(name: str, trained: bool) -> str:
    """The name shown in the UI: untrained models say so wherever they appear."""
    return name if trained else f"{name} - {UNTRAINED}"


def zoo(root: Path | None = None) -> list[ZooEntry]:
    """Every registered model with its shipped checkpoint (or None), in registry order."""
    entries = []
    for name, path in shipped_checkpoints(root).items():
        backbone, head = parse_model_name(name)
        entries.append(ZooEntry(name, backbone, head, path))
    return entries


def trained_names(root: Path | None = None) -> list[str]:
    return [e.name for e in zoo(root) if e.trained]


def default_selection(root: Path | None = None) -> list[str]:
    """Models to preselect: all with weights, or all of them when none has weights yet."""
    return trained_names(root) or [e.name for e in zoo(root)]


def recorded_miou(checkpoint: Path | None) -> float | None:
    """The validation mIoU a checkpoint recorded; None when there is none or the file is unreadable."""
    if checkpoint is None:
        return None
    try:
        return read_metadata(checkpoint).metrics.get("miou")
    except CheckpointError:
        return None


def default_model(root: Path | None = None, preferred: str = "mobilenet_v3_large-lraspp") -> str:
    """The model a picker starts on: the shipped model with the best recorded val mIoU; where no
    shipped file records one, ``preferred`` if it has weights, else the first that has, else ``preferred``."""
    entries = [e for e in zoo(root) if e.trained]
    scored = [(miou, e.name) for e in entries if (miou := recorded_miou(e.checkpoint)) is not None]
    if scored:
        return max(scored)[1]
    trained = [e.name for e in entries]
    return preferred if preferred in trained or not trained else trained[0]


def random_model(model_name: str, classes: list[str], input_size: int = 224) -> LoadedModel:
    """An untrained model with the same interface, flagged ``trained=False`` in its metadata."""
    model = build_model(model_name, num_classes=len(classes)).eval()
    meta = make_metadata(model, classes=classes, input_size=input_size,
                         model_kwargs={"output_stride": default_output_stride(model_name)}, trained=False)
    return LoadedModel(model, meta, None)


def open_model(ref: str | Path, classes: list[str] | None = None, *, input_size: int = 224) -> LoadedModel:
    """The model ``ref`` names, ready for inference.

    ``ref`` is a registered model name (its shipped checkpoint; without one, random weights for
    ``classes`` at ``input_size``, flagged untrained), or anything ``load_checkpoint`` takes: a
    ``.safetensors`` file, a training run folder, a foreign torch file.
    """
    if str(ref) in list_models():
        shipped = shipped_checkpoint(str(ref))
        if shipped is None:
            return random_model(str(ref), list(classes or DEFAULT_CLASSES), input_size)
        ref = shipped
    return load_checkpoint(ref)


def is_trained(loaded: LoadedModel) -> bool:
    return loaded.meta.trained


__all__ = ["BACKBONES", "HEADS", "DEFAULT_CLASSES", "UNTRAINED", "ZooEntry", "compose_name", "model_label",
           "zoo", "trained_names", "default_selection", "default_model", "recorded_miou", "open_model", "random_model", "is_trained"]

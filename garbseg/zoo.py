"""The model zoo as the app sees it: every registered model, whether weights ship for it, and how to
get something that predicts for each (its checkpoint, or random weights clearly flagged as such).

Kept free of Streamlit so that pages, the CLI and tests share one answer to "what can I run?".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoints import LoadedModel, load_checkpoint, random_model, shipped_checkpoints
from .models import BACKBONES, HEADS, parse_model_name

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


def default_model(root: Path | None = None, preferred: str = "mobilenet_v3_large-lraspp") -> str:
    """The model a picker starts on: ``preferred`` if it has weights, else the first that has, else ``preferred``."""
    trained = trained_names(root)
    return preferred if preferred in trained or not trained else trained[0]


def load_for_app(name: str, checkpoint: Path | None, classes: list[str] | None = None,
                 input_size: int = 224) -> LoadedModel:
    """The shipped model, or (without a checkpoint) random weights for ``classes``."""
    if checkpoint is not None:
        return load_checkpoint(checkpoint)
    return random_model(name, list(classes or DEFAULT_CLASSES), input_size)


def is_trained(loaded: LoadedModel) -> bool:
    return bool(loaded.meta.get("trained", loaded.path is not None))


__all__ = ["BACKBONES", "HEADS", "DEFAULT_CLASSES", "UNTRAINED", "ZooEntry", "compose_name", "model_label",
           "zoo", "trained_names", "default_selection", "default_model", "load_for_app", "is_trained"]

"""What a checkpoint says about itself, as one typed record with a JSON form.

Every garbseg checkpoint carries a :class:`CheckpointMeta` in its safetensors header (key
``garbseg``): enough to rebuild the model (name, classes, input size, normalisation, architecture
arguments) and to say where it came from (backbone initialisation, recipe, the data set by name and
size, metrics, machine, commit). A data set is named and described, never located: paths on the
machine that trained a model mean nothing elsewhere, so they are dropped when a file is read.

``from_dict`` validates what it reads and raises :class:`CheckpointError` naming the problem, so a
damaged or hand-edited header is a message, not a ``KeyError`` deep in model building.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePath

from ..core.errors import GarbsegError
from ..data import IMAGENET_MEAN, IMAGENET_STD

FORMAT = "garbseg-checkpoint"
FORMAT_VERSION = 1
# Keys of the ``data`` record that locate a data set on one machine (older files carry them).
_LOCATION_KEYS = ("root", "path")


class CheckpointError(GarbsegError, ValueError):
    """A checkpoint that cannot be read or does not fit; the message says what was expected."""


@dataclass
class CheckpointMeta:
    model: str
    classes: list[str]
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    model_kwargs: dict = field(default_factory=dict)
    backbone_init: str = "unknown"
    trained: bool = True
    epoch: int | None = None
    recipe: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # name, layout, image counts, split; never a path
    metrics: dict = field(default_factory=dict)  # measured at the end of training (val split)
    training_metrics: dict = field(default_factory=dict)  # float32 scores of a run before float16 export
    train_seconds: float | None = None
    device: str | None = None
    machine: str | None = None
    world_size: int | None = None  # processes that trained it (torchrun); None: one
    commit: str | None = None
    torch_version: str | None = None
    stored_dtype: str | None = None
    continued_from: dict | None = None
    fp16_miou_delta: float | None = None
    exported_from: str | None = None  # file name of the run checkpoint a shipped file was made from
    imported_from: str | None = None  # file name of a foreign checkpoint
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept on a round trip

    def __post_init__(self) -> None:
        # Paths of the machine that wrote the file mean nothing elsewhere: keep names only.
        self.data = {k: v for k, v in self.data.items() if k not in _LOCATION_KEYS}
        self.recipe = {k: _unlocated(v) for k, v in self.recipe.items()}
        self.exported_from = _unlocated(self.exported_from)
        self.imported_from = _unlocated(self.imported_from)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def normalization(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    def replace(self, **changes) -> "CheckpointMeta":
        known = {f.name for f in fields(self)}
        extra = {k: v for k, v in changes.items() if k not in known}
        values = {**asdict(self), **{k: v for k, v in changes.items() if k in known}}
        values["extra"] = {**values["extra"], **extra}
        return CheckpointMeta(**values)

    # --- JSON ------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The header's JSON object (format version first; empty optional fields left out)."""
        values = asdict(self)
        extra = values.pop("extra")
        mean, std = values.pop("mean"), values.pop("std")
        out = {"format": FORMAT, "format_version": FORMAT_VERSION}
        for key, value in values.items():
            if key == "input_size":
                out[key] = value
                out["normalization"] = {"mean": list(mean), "std": list(std)}
            elif value is not None and value != {} or key in ("model", "classes", "model_kwargs"):
                out[key] = value
        return {**out, **extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: dict, source: str = "checkpoint") -> "CheckpointMeta":
        if not isinstance(obj, dict):
            raise CheckpointError(f"{source}: metadata is not a JSON object")
        if obj.get("format") != FORMAT or not isinstance(obj.get("format_version"), int) \
                or obj["format_version"] > FORMAT_VERSION:
            raise CheckpointError(f"{source}: format {obj.get('format')!r} v{obj.get('format_version')}; "
                                  f"this garbseg reads {FORMAT!r} up to v{FORMAT_VERSION}")
        known = {f.name for f in fields(cls)} - {"mean", "std", "extra"}
        values = {k: v for k, v in obj.items() if k in known}
        extra = {k: v for k, v in obj.items() if k not in known | {"format", "format_version", "normalization"}}
        norm = obj.get("normalization", {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)})
        _require(isinstance(norm, dict) and _floats(norm.get("mean"), 3) and _floats(norm.get("std"), 3)
                 and all(s > 0 for s in norm["std"]),
                 source, "normalization must hold 3 means and 3 positive standard deviations")
        _require(isinstance(values.get("model"), str), source, "no model name")
        classes = values.get("classes")
        _require(isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes),
                 source, "classes must be a list of at least 2 names (background first)")
        size = values.get("input_size", 224)
        _require(isinstance(size, int) and not isinstance(size, bool) and 16 <= size <= 4096, source,
                 f"input_size must be a whole number from 16 to 4096, not {size!r}")
        _require(isinstance(values.get("model_kwargs", {}), dict), source, "model_kwargs must be an object")
        for key in ("data", "recipe", "metrics", "training_metrics"):
            _require(isinstance(values.get(key, {}), dict), source, f"{key} must be an object")
        return cls(**values, mean=tuple(norm["mean"]), std=tuple(norm["std"]), extra=extra)

    @classmethod
    def from_json(cls, text: str, source: str = "checkpoint") -> "CheckpointMeta":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise CheckpointError(f"{source}: metadata is not valid JSON ({exc})") from exc
        return cls.from_dict(obj, source)


def _unlocated(value):
    """An absolute path reduced to what means something elsewhere (from a ``runs`` folder on, else the
    file name); anything else as it is."""
    if not (isinstance(value, str) and PurePath(value).is_absolute()):
        return value
    parts = PurePath(value).parts
    runs = max((i for i, part in enumerate(parts) if part == "runs"), default=None)
    return "/".join(parts[runs:]) if runs is not None else parts[-1]


def _floats(values, n: int) -> bool:
    return (isinstance(values, (list, tuple)) and len(values) == n
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values))


def _require(condition: bool, source: str, message: str) -> None:
    if not condition:
        raise CheckpointError(f"{source}: {message}")

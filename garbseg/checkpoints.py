"""Checkpoints: tensors in safetensors, everything needed to rebuild the model in its JSON header.

One ``.safetensors`` file holds the weights and, under the header key ``garbseg``, the metadata
(format version, model name, classes, input size, normalisation, how the backbone started,
training recipe, data provenance, metrics, commit). One file means one atomic rename on save.

Foreign files also load: the seed notebook's ``torch.save({'model_state_dict': ...})`` and plain
torchvision state_dicts. They are read with ``torch.load(weights_only=True)`` only, so a file that
carries pickled objects other than tensors is refused rather than executed.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, safe_open
from torch import nn

from .data import IMAGENET_MEAN, IMAGENET_STD
from .models import build_model, default_output_stride, list_models, parse_model_name

FORMAT = "garbseg-checkpoint"
FORMAT_VERSION = 1
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR = Path(os.environ.get("GARBSEG_CHECKPOINTS", PROJECT_ROOT / "checkpoints"))
SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message says what was expected."""


@dataclass
class LoadedModel:
    """A model ready for inference plus the metadata it came with."""

    model: nn.Module
    meta: dict
    path: Path | None

    @property
    def name(self) -> str:
        return self.meta["model"]

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The commit the code runs from (with ``-dirty`` when the tree has changes), if in git.

    ``$GARBSEG_COMMIT`` stands in where the code runs from a copy without ``.git`` (a GPU machine).
    """
    if os.environ.get("GARBSEG_COMMIT"):
        return os.environ["GARBSEG_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def make_metadata(model: nn.Module, *, classes: list[str], input_size: int, model_kwargs: dict,
                  mean=IMAGENET_MEAN, std=IMAGENET_STD, **extra) -> dict:
    """The metadata every garbseg checkpoint carries; ``extra`` adds recipe, data, metrics..."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.model_name,
        "classes": list(classes),
        "input_size": int(input_size),
        "normalization": {"mean": list(mean), "std": list(std)},
        "model_kwargs": dict(model_kwargs),
        "backbone_init": getattr(model, "backbone_init", "unknown"),
        "commit": git_commit(),
        "torch_version": torch.__version__,
        **extra,
    }


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def inference_state(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The state_dict without training-only parts (auxiliary head), optionally cast (fp16 files)."""
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("aux_classifier."):
            continue
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        state[key] = value.detach().contiguous().cpu()
    return state


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict, *, dtype: torch.dtype | None = None) -> Path:
    """Write weights (``dtype`` e.g. ``torch.float16`` halves the file) and metadata atomically."""
    path = Path(path)
    tensors = inference_state(model, dtype)
    meta = {**meta, "stored_dtype": str(dtype or torch.float32).replace("torch.", "")}
    header = {"garbseg": json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    return path


def read_metadata(path: str | Path) -> dict:
    """The metadata of a garbseg checkpoint, without loading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if "garbseg" not in header:
        raise CheckpointError(f"{path}: a safetensors file without garbseg metadata (header key 'garbseg')")
    meta = json.loads(header["garbseg"])
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format {meta.get('format')!r} v{meta.get('format_version')}; "
            f"this garbseg reads {FORMAT!r} up to v{FORMAT_VERSION}"
        )
    return meta


def model_from_state(meta: dict, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Build the model the metadata describes and load ``state`` into it (float32, eval mode)."""
    kwargs = {**meta.get("model_kwargs", {}), "num_classes": len(meta["classes"]), "aux_loss": False}
    model = build_model(meta["model"], **kwargs)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()
             if not k.startswith("aux_classifier.")}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source}: weights do not fit {meta['model']} with {len(meta['classes'])} classes "
            f"(missing {len(result.missing_keys)}: {result.missing_keys[:3]}; "
            f"unexpected {len(result.unexpected_keys)}: {result.unexpected_keys[:3]})"
        )
    model.backbone_init = meta.get("backbone_init", "unknown")
    return model.eval()


# --- foreign formats -------------------------------------------------------------------------

def _torch_load_tensors(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused. It holds pickled Python objects that are not tensors, and garbseg only "
            f"loads foreign checkpoints with torch.load(weights_only=True). Save a state_dict instead "
            f"(torch.save(model.state_dict(), path)). Detail: {str(exc).splitlines()[0]}"
        ) from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: not a torch.save file ({exc})") from exc


def guess_model_name(state: dict[str, torch.Tensor]) -> str:
    """Which registered architecture a torchvision-style state_dict belongs to, from its keys."""
    keys = set(state)
    if "backbone.conv1.weight" in keys:
        backbone = "resnet50"
    elif "backbone.0.0.weight" in keys:
        # MobileNetV3's stem has 16 filters, MobileNetV2's 32.
        backbone = "mobilenet_v3_large" if state["backbone.0.0.weight"].shape[0] == 16 else "mobilenet_v2"
    else:
        raise CheckpointError("unrecognised backbone: expected keys 'backbone.conv1.weight' (ResNet) "
                              "or 'backbone.0.0.weight' (MobileNet)")
    if "classifier.cbr.0.weight" in keys:
        head = "lraspp"
    elif any(k.startswith("classifier.0.convs.") for k in keys):
        head = "deeplabv3"
    elif "classifier.4.weight" in keys:
        head = "fcn"
    else:
        raise CheckpointError("unrecognised head: expected DeepLabV3 ('classifier.0.convs'), "
                              "FCN ('classifier.4') or LR-ASPP ('classifier.cbr') keys")
    return f"{backbone}-{head}"


def _num_classes(state: dict[str, torch.Tensor], model_name: str) -> int:
    key = "classifier.high_classifier.weight" if model_name.endswith("lraspp") else "classifier.4.weight"
    if key not in state:
        raise CheckpointError(f"weights do not fit {model_name}: its final layer {key!r} is missing "
                              f"(the file looks like {guess_model_name(state)})")
    return int(state[key].shape[0])


def load_foreign(path: str | Path, *, classes: list[str] | None = None, model_name: str | None = None,
                 input_size: int = 224) -> LoadedModel:
    """Load the seed notebook's training checkpoints or a plain torchvision state_dict."""
    path = Path(path)
    obj = _torch_load_tensors(path)
    provenance = "torchvision state_dict"
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj, provenance = obj["model_state_dict"], "seed notebook training checkpoint"
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state_dict (name -> tensor) or the seed notebook's "
                              "{'model_state_dict': ..., 'optimizer_state_dict': ..., 'epoch': ...}")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    name = model_name or guess_model_name(state)
    parse_model_name(name)
    n = _num_classes(state, name)
    if classes is None:
        classes = ["background"] + [f"class_{i}" for i in range(1, n)]
    if len(classes) != n:
        raise CheckpointError(f"{path}: the file has {n} output classes but {len(classes)} class names were given")
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": name, "classes": list(classes),
        "input_size": input_size, "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "model_kwargs": {"output_stride": default_output_stride(name)},
        "backbone_init": "unknown (foreign checkpoint)", "data": {"source": provenance},
        "imported_from": str(path),
    }
    return LoadedModel(model_from_state(meta, state, str(path)), meta, path)


# --- lookup ----------------------------------------------------------------------------------

def shipped_checkpoint(model_name: str, root: Path | None = None) -> Path | None:
    """The file in ``checkpoints/`` for ``model_name``, or None."""
    path = Path(root or CHECKPOINT_DIR) / f"{model_name}{SUFFIX}"
    return path if path.is_file() else None


def shipped_checkpoints(root: Path | None = None) -> dict[str, Path | None]:
    """Every registered model name mapped to its shipped checkpoint (None where none ships)."""
    return {name: shipped_checkpoint(name, root) for name in list_models()}


def resolve_checkpoint(ref: str | Path) -> Path:
    """A checkpoint file from a path, a training run folder (its best) or a registered model name."""
    path = Path(ref)
    if path.is_dir():
        for candidate in ("best" + SUFFIX, "last" + SUFFIX):
            if (path / candidate).is_file():
                return path / candidate
        raise CheckpointError(f"{path}: a folder without best{SUFFIX} or last{SUFFIX}")
    if path.is_file():
        return path
    if str(ref) in list_models():
        shipped = shipped_checkpoint(str(ref))
        if shipped is None:
            raise CheckpointError(f"no checkpoint ships for {ref} (looked in {CHECKPOINT_DIR})")
        return shipped
    raise CheckpointError(f"{ref}: no such file, run folder or model name")


def load_checkpoint(ref: str | Path, **foreign_kwargs) -> LoadedModel:
    """Load any supported checkpoint for inference (float32, eval mode)."""
    path = resolve_checkpoint(ref)
    if path.suffix != SUFFIX:
        return load_foreign(path, **foreign_kwargs)
    meta = read_metadata(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot read tensors ({exc})") from exc
    return LoadedModel(model_from_state(meta, state, str(path)), meta, path)


def random_model(model_name: str, classes: list[str], input_size: int = 224) -> LoadedModel:
    """An untrained model with the same interface, flagged ``trained: False`` in its metadata."""
    model = build_model(model_name, num_classes=len(classes)).eval()
    meta = make_metadata(model, classes=classes, input_size=input_size,
                         model_kwargs={"output_stride": default_output_stride(model_name)}, trained=False)
    return LoadedModel(model, meta, None)


def export_checkpoint(src: str | Path, dst: str | Path, *, dtype: torch.dtype | None = torch.float16,
                      **meta_updates) -> Path:
    """Copy a checkpoint for shipping: weights cast (float16 halves the size), metadata kept and extended."""
    loaded = load_checkpoint(src)
    meta = {**loaded.meta, "exported_from": str(src), **meta_updates}
    return save_checkpoint(dst, loaded.model, meta, dtype=dtype)

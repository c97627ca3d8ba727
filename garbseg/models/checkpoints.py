"""Checkpoints: tensors in safetensors, everything needed to rebuild the model in its JSON header.

One ``.safetensors`` file holds the weights and, under the header key ``garbseg``, the metadata
(:class:`garbseg.models.metadata.CheckpointMeta`). One file means one atomic rename on save.

Foreign files also load: the seed notebook's ``torch.save({'model_state_dict': ...})`` and plain
torchvision state_dicts. They are read with ``torch.load(weights_only=True)`` only, so a file that
carries pickled objects other than tensors is refused rather than executed.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ..core.files import atomic_write
from ..core.paths import checkpoint_dir, git_commit
from .metadata import CheckpointError, CheckpointMeta
from .registry import build_model, default_output_stride, list_models, parse_model_name

SUFFIX = ".safetensors"
HEADER_KEY = "garbseg"


@dataclass
class LoadedModel:
    """A model ready for inference plus the metadata it came with."""

    model: nn.Module
    meta: CheckpointMeta
    path: Path | None

    @property
    def name(self) -> str:
        return self.meta.model

    @property
    def classes(self) -> list[str]:
        return self.meta.classes

    @property
    def trained(self) -> bool:
        return self.meta.trained


def make_metadata(model: nn.Module, *, classes: list[str], input_size: int, model_kwargs: dict,
                  **extra) -> CheckpointMeta:
    """The metadata of ``model`` as it stands now; ``extra`` adds recipe, data, metrics..."""
    return CheckpointMeta(model=model.model_name, classes=list(classes), input_size=int(input_size),
                          model_kwargs=dict(model_kwargs), backbone_init=getattr(model, "backbone_init", "unknown"),
                          commit=git_commit(), torch_version=torch.__version__).replace(**extra)


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


def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta, *,
                    dtype: torch.dtype | None = None) -> Path:
    """Write weights (``dtype`` e.g. ``torch.float16`` halves the file) and metadata atomically."""
    path = Path(path)
    tensors = inference_state(model, dtype)
    meta = meta.replace(stored_dtype=str(dtype or torch.float32).replace("torch.", ""))
    header = {HEADER_KEY: meta.to_json()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    return path


def read_metadata(path: str | Path) -> CheckpointMeta:
    """The metadata of a garbseg checkpoint, without loading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if HEADER_KEY not in header:
        raise CheckpointError(f"{path}: a safetensors file without garbseg metadata (header key {HEADER_KEY!r})")
    return CheckpointMeta.from_json(header[HEADER_KEY], str(path))


def model_from_state(meta: CheckpointMeta, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Build the model the metadata describes and load ``state`` into it (float32, eval mode)."""
    kwargs = {**meta.model_kwargs, "num_classes": meta.num_classes, "aux_loss": False}
    try:
        model = build_model(meta.model, **kwargs)
    except (TypeError, ValueError, KeyError) as exc:  # model_kwargs the registry does not take, an unknown name
        raise CheckpointError(f"{source}: cannot build {meta.model} from its metadata ({exc})") from exc
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()
             if not k.startswith("aux_classifier.")}
    own = model.state_dict()
    wrong_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if wrong_shape or missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not fit {meta.model} with {meta.num_classes} classes "
            f"(wrong shape {len(wrong_shape)}: {wrong_shape[:3]}; missing {len(missing)}: {missing[:3]}; "
            f"unexpected {len(unexpected)}: {unexpected[:3]})"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} tensors hold NaN or infinite values (first: {bad[:3]}); "
                              "the weights are damaged")
    model.load_state_dict(state)
    model.backbone_init = meta.backbone_init
    return model.eval()


# --- foreign formats -------------------------------------------------------------------------

def _torch_load_tensors(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused. It holds pickled Python objects that are not tensors, and garbseg only "
            f"loads foreign checkpoints with torch.load(weights_only=True). Save a state_dict instead "
            f"(torch.save(model.state_dict(), path)). Detail: {refusal_reason(exc)}"
        ) from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: not a torch.save file ({refusal_reason(exc)})") from exc


def refusal_reason(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, on one line and without torch's advice to
    retry with ``weights_only=False`` (which would run whatever the file holds)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        after = [line for line in lines if "WeightsUnpickler error" in line]
        rest = lines[lines.index(after[0]) + 1:] if after else []
        return rest[0] if rest else "the file holds Python objects that are not tensors"
    return lines[0] if lines else type(exc).__name__


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
    meta = CheckpointMeta(model=name, classes=list(classes), input_size=input_size,
                          model_kwargs={"output_stride": default_output_stride(name)},
                          backbone_init="unknown (foreign checkpoint)", data={"source": provenance},
                          imported_from=path.name)
    return LoadedModel(model_from_state(meta, state, str(path)), meta, path)


# --- lookup ----------------------------------------------------------------------------------

def shipped_checkpoint(model_name: str, root: Path | None = None) -> Path | None:
    """The file in the checkpoint folder (``garbseg.core.paths.checkpoint_dir``) for ``model_name``, or None."""
    path = Path(root or checkpoint_dir()) / f"{model_name}{SUFFIX}"
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
            raise CheckpointError(f"no checkpoint ships for {ref} (looked in {checkpoint_dir()})")
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


def export_checkpoint(src: str | Path, dst: str | Path, *, dtype: torch.dtype | None = torch.float16,
                      **meta_updates) -> Path:
    """Copy a checkpoint for shipping: weights cast (float16 halves the size), metadata kept and extended."""
    loaded = load_checkpoint(src)
    meta = loaded.meta.replace(**{"exported_from": Path(src).name, **meta_updates})
    return save_checkpoint(dst, loaded.model, meta, dtype=dtype)

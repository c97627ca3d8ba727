"""Backbone and head registries: every backbone x head pairing builds into a segmentation model.

Pure architecture: ``build_model`` returns random weights and reads no file. Where starting weights
come from (ImageNet, a state_dict, another checkpoint's trunk) is :mod:`garbseg.models.backbone_init`,
used by training only.

A model is named ``"<backbone>-<head>"`` (``mobilenet_v3_large-deeplabv3``). Every model takes a
normalised ``N x 3 x H x W`` batch and returns ``{"out": logits}`` at the input's size, plus
``"aux"`` when built with an auxiliary head (training only).

Where torchvision ships a ready builder for a pairing we call it, so that state_dict keys match
torchvision's (and therefore the seed notebook's checkpoints). The other pairings are wired the
way torchvision wires its own: an ``IntermediateLayerGetter`` over the classification backbone,
then torchvision's head modules.

Extending: add a :class:`Backbone` to ``BACKBONES`` (a builder returning the trunk plus the names
and channels of its feature taps) and every head works with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import segmentation as tvseg
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
from torchvision.models.segmentation.fcn import FCN, FCNHead
from torchvision.models.segmentation.lraspp import LRASPP

from ..core.errors import GarbsegError


class UnknownModelError(GarbsegError, KeyError):
    """A model, backbone or head name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


RANDOM_INIT = "random (trained from scratch)"


@dataclass(frozen=True)
class Trunk:
    """A classification network cut into a feature extractor with named taps.

    ``module`` holds the layers; ``high``/``low`` name the deep and the shallower tap
    (the shallow one feeds LR-ASPP and auxiliary heads) and the ``*_channels`` give their widths.
    """

    module: nn.Module
    high: str
    high_channels: int
    low: str
    low_channels: int


@dataclass(frozen=True)
class Backbone:
    name: str
    build: Callable[[int], Trunk]  # output_stride -> trunk with random weights
    output_strides: tuple[int, ...]  # supported output strides, default first
    default_lr: float  # the seed recipe's AdamW learning rate for this family
    imagenet_weights: str  # torchvision weights enum member, "Enum.MEMBER"


def _mobilenet_v3_large_trunk(output_stride: int) -> Trunk:
    # torchvision's "dilated" MobileNetV3 keeps the last stage at stride 16.
    features = tvm.mobilenet_v3_large(weights=None, dilated=output_stride == 16).features
    # Stage ends are the blocks that reduce resolution (torchvision marks them with _is_cn).
    stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    high, low = stages[-1], stages[-4]
    return Trunk(features, str(high), features[high].out_channels, str(low), features[low].out_channels)


def _dilate_mobilenet_v2(features: nn.Sequential, first_block: int) -> None:
    """Turn the stride-2 block at ``first_block`` and all later blocks into dilation 2, stride 1."""
    for block in list(features)[first_block:]:
        for conv in block.modules():
            if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                conv.stride = (1, 1)
                conv.dilation = (2, 2)
                conv.padding = (2, 2)


def _mobilenet_v2_trunk(output_stride: int) -> Trunk:
    features = tvm.mobilenet_v2(weights=None).features
    if output_stride == 16:
        _dilate_mobilenet_v2(features, first_block=14)  # block 14 starts the last stride-2 stage
    # Block 6 ends the stride-8 stage (32 channels). The deep tap is block 17, the last inverted
    # residual (320 channels), as in DeepLab's own MobileNetV2 setting: the final 1x1 conv to 1280
    # channels only serves ImageNet classification, and heads on 1280 channels cost 4x the weights
    # (MobileNetV2-DeepLabv3 24 MB -> 9 MB in float16) for no measured gain here.
    return Trunk(features, "17", 320, "6", 32)


def _resnet_trunk(builder: Callable[..., nn.Module], output_stride: int) -> Trunk:
    dilation = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}[output_stride]
    net = builder(weights=None, replace_stride_with_dilation=dilation)
    trunk = nn.Sequential()
    for name, child in net.named_children():
        if name in ("avgpool", "fc"):
            break
        trunk.add_module(name, child)
    high = trunk.layer4[-1]
    low = trunk.layer3[-1]
    high_ch = high.conv3.out_channels if hasattr(high, "conv3") else high.conv2.out_channels
    low_ch = low.conv3.out_channels if hasattr(low, "conv3") else low.conv2.out_channels
    return Trunk(trunk, "layer4", high_ch, "layer3", low_ch)


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v3_large": Backbone(
        "mobilenet_v3_large", _mobilenet_v3_large_trunk, (16, 32), 1e-4, "MobileNet_V3_Large_Weights.IMAGENET1K_V1"
    ),
    "mobilenet_v2": Backbone("mobilenet_v2", _mobilenet_v2_trunk, (16, 32), 1e-4, "MobileNet_V2_Weights.IMAGENET1K_V1"),
    "resnet50": Backbone(
        "resnet50", lambda os: _resnet_trunk(tvm.resnet50, os), (8, 16, 32), 5e-5, "ResNet50_Weights.IMAGENET1K_V1"
    ),
}


def _wire_deeplabv3(trunk: Trunk, num_classes: int, aux: bool) -> nn.Module:
    layers = {trunk.high: "out"} | ({trunk.low: "aux"} if aux else {})
    body = IntermediateLayerGetter(trunk.module, return_layers=layers)
    aux_head = FCNHead(trunk.low_channels, num_classes) if aux else None
    return DeepLabV3(body, DeepLabHead(trunk.high_channels, num_classes), aux_head)


def _wire_fcn(trunk: Trunk, num_classes: int, aux: bool) -> nn.Module:
    layers = {trunk.high: "out"} | ({trunk.low: "aux"} if aux else {})
    body = IntermediateLayerGetter(trunk.module, return_layers=layers)
    aux_head = FCNHead(trunk.low_channels, num_classes) if aux else None
    return FCN(body, FCNHead(trunk.high_channels, num_classes), aux_head)


def _wire_lraspp(trunk: Trunk, num_classes: int, aux: bool) -> nn.Module:
    # LR-ASPP has no auxiliary head in torchvision either; ``aux`` is accepted and ignored.
    body = IntermediateLayerGetter(trunk.module, return_layers={trunk.low: "low", trunk.high: "high"})
    return LRASPP(body, trunk.low_channels, trunk.high_channels, num_classes)


HEADS: dict[str, Callable[[Trunk, int, bool], nn.Module]] = {
    "deeplabv3": _wire_deeplabv3,
    "fcn": _wire_fcn,
    "lraspp": _wire_lraspp,
}

# torchvision's own builders, used where they exist so that keys match torchvision checkpoints.
# They take the torchvision-default output stride only, recorded here.
_READY_BUILDERS: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "mobilenet_v3_large-deeplabv3": (tvseg.deeplabv3_mobilenet_v3_large, 16),
    "mobilenet_v3_large-lraspp": (tvseg.lraspp_mobilenet_v3_large, 16),
    "resnet50-deeplabv3": (tvseg.deeplabv3_resnet50, 8),
    "resnet50-fcn": (tvseg.fcn_resnet50, 8),
}


def list_models() -> list[str]:
    """All registered ``<backbone>-<head>`` names, backbones in registry order."""
    return [f"{b}-{h}" for b in BACKBONES for h in HEADS]


def parse_model_name(name: str) -> tuple[str, str]:
    """Split ``"<backbone>-<head>"``; raise :class:`UnknownModelError` listing valid names."""
    backbone, sep, head = name.rpartition("-")
    if not sep or backbone not in BACKBONES or head not in HEADS:
        raise UnknownModelError(
            f"unknown model {name!r}. Valid names: {', '.join(list_models())} "
            f"(backbones: {', '.join(BACKBONES)}; heads: {', '.join(HEADS)})"
        )
    return backbone, head


def default_output_stride(name: str) -> int:
    backbone, _ = parse_model_name(name)
    ready = _READY_BUILDERS.get(name)
    return ready[1] if ready else BACKBONES[backbone].output_strides[0]


def build_model(
    name: str,
    *,
    num_classes: int,
    aux_loss: bool = False,
    output_stride: int | None = None,
) -> nn.Module:
    """Build ``name`` with ``num_classes`` outputs and random weights (``model.backbone_init`` says so;
    :func:`garbseg.models.backbone_init.initialise_backbone` loads starting weights)."""
    backbone_name, head_name = parse_model_name(name)
    backbone = BACKBONES[backbone_name]
    stride = output_stride or default_output_stride(name)
    if stride not in backbone.output_strides:
        raise ValueError(f"{backbone_name} supports output strides {backbone.output_strides}, not {stride}")
    ready = _READY_BUILDERS.get(name)
    if ready and ready[1] == stride:
        kwargs = {"aux_loss": aux_loss} if head_name != "lraspp" else {}
        model = ready[0](weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    else:
        model = HEADS[head_name](backbone.build(stride), num_classes, aux_loss)
    model.backbone_init = RANDOM_INIT
    model.model_name = name
    return model


def count_parameters(model: nn.Module, *, include_aux: bool = False) -> int:
    """Parameters used at inference (the auxiliary head is training-only)."""
    return sum(
        p.numel() for n, p in model.named_parameters() if include_aux or not n.startswith("aux_classifier.")
    )


def head_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The head's logits at its own resolution (1/8 or 1/16 of the input), i.e. ``model(x)["out"]``
    without the final bilinear upsampling to the input size. Inference runtimes export this: the
    caller resizes once, straight to the photo's size, instead of twice (input size, then photo)."""
    features = model.backbone(x)
    if isinstance(model, LRASPP):  # its head reads two feature maps
        return model.classifier(features)
    return model.classifier(features["out"])


@torch.no_grad()
def output_size_check(model: nn.Module, size: int = 64) -> tuple[int, ...]:
    """Shape of ``model``'s output on a random ``1 x 3 x size x size`` input (a cheap sanity check)."""
    model.eval()
    return tuple(model(torch.randn(1, 3, size, size))["out"].shape)

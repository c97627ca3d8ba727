"""What both int8 runtimes share: the layers kept float, and the weight bits this CPU can sum.

Post-training quantisation keeps the squeeze-excitation gates float (1x1 convolutions on pooled vectors,
whose sigmoid gates multiply whole feature maps; cheap) and, per model, the layers found to carry the
loss: a MobileNet's first three blocks (the stem convolution and two inverted residuals, at 1/2 and 1/4 of
the input; the same module paths in MobileNetV2 and V3), whose rounding no residual connection carries
away yet (benchmarks/README.md, "Each model's own float layers"). Each runtime lists its own models,
since each loses on different ones.
"""

from __future__ import annotations

from pathlib import Path

from ...core.machine import cpu_supports_vnni
from .export import nodes_of_modules

FLOAT_CLASSES = ("SqueezeExcitation",)  # module classes kept float in every model
MOBILENET_STEM = ("model.backbone.0", "model.backbone.1", "model.backbone.2")


def int8_weight_bits() -> int:
    """7 on CPUs without VNNI, where an int8 convolution sums pairs of products in 16 bits and saturates
    (OpenVINO's "saturation issue"; NNCF's overflow fix and ONNX Runtime's reduce_range halve the
    weights' range), else 8."""
    return 8 if cpu_supports_vnni() else 7


def float_nodes(onnx_file: Path, scopes: tuple[str, ...]) -> list[str]:
    """The ONNX nodes to keep float: those inside ``scopes`` and those of the FLOAT_CLASSES modules."""
    return nodes_of_modules(onnx_file, scopes, FLOAT_CLASSES)

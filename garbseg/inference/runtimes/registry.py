"""The runtimes garbseg knows, derived from the engine classes' own attributes (see ``Engine``):
their names in order, where each falls back to, which are int8, which ``auto`` considers.

Adding a runtime is adding its class to ``ENGINE_CLASSES``; every table below, the CLI's help and
the app's picker follow.
"""

from __future__ import annotations

from .base import Engine
from .openvino_engines import OpenVinoBf16Engine, OpenVinoEngine, OpenVinoInt8Bf16Engine, OpenVinoInt8Engine
from .ort_engines import OrtEngine, OrtInt8Engine
from .torch_engines import TorchEngine, TorchOptEngine

ENGINE_CLASSES: tuple[type[Engine], ...] = (
    TorchEngine, TorchOptEngine, OrtEngine, OpenVinoEngine, OpenVinoBf16Engine, OpenVinoInt8Engine,
    OpenVinoInt8Bf16Engine, OrtInt8Engine,
)
ENGINES: dict[str, type[Engine]] = {cls.name: cls for cls in ENGINE_CLASSES}
AUTO = "auto"
RUNTIMES = [*ENGINES, AUTO]
FALLBACK = {cls.name: cls.fallback for cls in ENGINE_CLASSES if cls.fallback}
AUTO_CANDIDATES = [cls.name for cls in ENGINE_CLASSES if cls.auto]
INT8_RUNTIMES = tuple(cls.name for cls in ENGINE_CLASSES if cls.int8)


def runtime_version(name: str) -> str:
    """Versions and settings that change what a runtime computes: a change invalidates cached checks."""
    return ENGINES[name].version()


def parse_runtimes(text: str) -> list[str]:
    """``"torch,onnx"`` -> ``["torch", "onnx"]``; unknown names raise ``ValueError`` listing the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        raise ValueError(f"unknown runtime {', '.join(unknown) or repr(text)}; valid: {', '.join(RUNTIMES)}")
    return names


def runtimes_help() -> str:
    """One sentence listing every runtime, for ``--help`` texts."""
    return (f"inference runtime: {', '.join(ENGINES)}, or {AUTO} (the fastest one that agrees with eager "
            "torch on this machine; chosen once, cached); int8 runtimes: " + ", ".join(INT8_RUNTIMES) + ".")

"""Inference runtimes behind one interface, their checks against eager PyTorch, and ``auto``.

    engine = build_engine(loaded, "openvino", size=224)   # falls back with a warning if it can't
    logits = engine(batch)                                 # N x 3 x 224 x 224 -> N x C x h x w (h <= 224)
    engine.name                                            # what actually runs

Runtimes: ``torch`` (eager float32, the reference), ``torch-opt``, ``onnx``, ``onnx-int8``,
``openvino``, ``openvino-bf16``, ``openvino-int8``, ``openvino-int8-bf16``; ``auto`` picks the fastest
one that passes its check (see :mod:`.checks`) for this model, size and machine, and remembers the
choice.

Calibrating and checking an int8 runtime on trained weights takes minutes, too long for interactive
use: with ``calibrate=False`` ``auto`` considers only the int8 runtimes whose check is already
cached (from ``bench``, ``benchmarks/runtimes.py`` or ``predict --calibrate``). Such a choice is
cached apart (``auto-<size>-t<threads>-float.json``, keyed by its candidates too); the full choice,
once made, is used either way.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Callable

from ..checkpoints import LoadedModel
from .base import BuildContext, Engine, RuntimeUnavailable, warn
from .checks import INT8_RUNTIMES, Reference, build_reference, cached_check, run_check
from .ort_engines import OrtEngine, OrtInt8Engine
from .openvino_engines import OpenVinoBf16Engine, OpenVinoEngine, OpenVinoInt8Bf16Engine, OpenVinoInt8Engine
from .select import cached_choice, choose
from .torch_engines import TorchEngine, TorchOptEngine

ENGINES: dict[str, type[Engine]] = {
    "torch": TorchEngine,
    "torch-opt": TorchOptEngine,
    "onnx": OrtEngine,
    "onnx-int8": OrtInt8Engine,
    "openvino": OpenVinoEngine,
    "openvino-bf16": OpenVinoBf16Engine,
    "openvino-int8": OpenVinoInt8Engine,
    "openvino-int8-bf16": OpenVinoInt8Bf16Engine,
}
RUNTIMES = list(ENGINES) + ["auto"]
# Where a runtime that cannot run falls back to (each step warns); torch always works.
FALLBACK = {
    "onnx-int8": "onnx",
    "openvino-int8": "openvino",
    "openvino-int8-bf16": "openvino-int8",
    "openvino-bf16": "openvino",
    "openvino": "onnx",
    "onnx": "torch-opt",
    "torch-opt": "torch",
}
# onnx-int8 stays a candidate although on trained MobileNets its static MinMax quantisation lost 2 to 10
# val mIoU points: on ResNet50 it was the fastest runtime (3.8x eager vs 3.2x for openvino-int8).
AUTO_CANDIDATES = ["torch", "torch-opt", "onnx", "openvino", "openvino-bf16", "openvino-int8", "openvino-int8-bf16",
                   "onnx-int8"]


def default_data_dir() -> Path | None:
    from ..data import DEFAULT_DATA_DIR

    return Path(DEFAULT_DATA_DIR) if Path(DEFAULT_DATA_DIR).exists() else None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def runtime_version(name: str) -> str:
    """Versions that change what a runtime computes: a different one invalidates cached checks."""
    from .calibration import CALIBRATION_IMAGES
    from .ort_engines import ORT_CALIBRATION_IMAGES

    parts = [f"torch {_version('torch')}"]
    if name.startswith("onnx"):
        parts.append(f"onnxruntime {_version('onnxruntime')}")
    if name.startswith("openvino"):
        parts.append(f"openvino {_version('openvino')}")
    if name.startswith("openvino-int8"):
        from .openvino_engines import INT8_RECIPE

        parts += [f"nncf {_version('nncf')}", f"calib {CALIBRATION_IMAGES}", f"recipe {INT8_RECIPE}"]
    if name == "onnx-int8":
        parts.append(f"calib {ORT_CALIBRATION_IMAGES}")
    return "; ".join(parts)


def _context(loaded: LoadedModel, size: int, threads: int | None, data_dir, log) -> BuildContext:
    from ..bench import default_threads

    data = Path(data_dir) if data_dir is not None else default_data_dir()
    return BuildContext(loaded, int(size), int(threads or default_threads()), data, log or (lambda m: None))


def parse_runtimes(text: str) -> list[str]:
    """``"torch,onnx"`` -> ``["torch", "onnx"]``; unknown names raise ``ValueError`` listing the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        raise ValueError(f"unknown runtime {', '.join(unknown) or repr(text)}; valid: {', '.join(RUNTIMES)}")
    return names


def build_engine(loaded: LoadedModel, runtime: str = "torch", *, size: int, threads: int | None = None,
                 data_dir: str | Path | None = None, fallback: bool = True, calibrate: bool = True,
                 log: Callable[[str], None] | None = None) -> Engine:
    """The engine for ``runtime`` (or ``auto``'s choice). With ``fallback`` a runtime that cannot
    run warns and hands over to the next one in ``FALLBACK``; ``engine.name`` says what runs.
    ``calibrate=False``: ``auto`` leaves out int8 runtimes that were not calibrated and checked yet."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    ctx = _context(loaded, size, threads, data_dir, log)
    if runtime == "auto":
        return _auto_engine(ctx, calibrate)
    name = runtime
    while True:
        try:
            return ENGINES[name](ctx)
        except RuntimeUnavailable as exc:
            if not fallback or name not in FALLBACK:
                raise
            warn(f"{name} runtime unavailable for {loaded.name} ({exc}); falling back to {FALLBACK[name]}")
            name = FALLBACK[name]


def check_engine(loaded: LoadedModel, engine: Engine, *, data_dir=None, reference: Reference | None = None,
                 log=None) -> dict:
    """The engine's check result (cached per weights, size, runtime and version)."""
    ctx = _context(loaded, engine.size, engine.threads, data_dir, log)
    version = runtime_version(engine.name)
    if engine.name == "torch":
        return {"runtime": "torch", "version": version, "agreement": 1.0, "passed": True}
    cached = cached_check(ctx, engine.name, version)
    if cached is not None:
        return cached
    if reference is None:
        reference = build_reference(ctx, TorchEngine(ctx), with_miou=engine.name in INT8_RUNTIMES)
    return run_check(ctx, engine, reference, version)


def _labelled_val_fits(ctx: BuildContext) -> bool:
    from ..data import load_dataset

    try:
        return ctx.data_dir is not None and list(load_dataset(ctx.data_dir, "val").classes) == list(ctx.loaded.classes)
    except Exception:  # no val split, unreadable data: nothing to measure int8 against
        return False


def _fingerprint(ctx: BuildContext) -> dict:
    from ..bench import cpu_name

    return {"cpu": cpu_name(), "threads": ctx.threads, "data_dir": str(ctx.data_dir),
            **{name: runtime_version(name) for name in AUTO_CANDIDATES}}


def _cached_engine(ctx: BuildContext, fingerprint: dict, partial: bool) -> Engine | None:
    chosen = cached_choice(ctx, fingerprint, partial=partial)
    if chosen is not None:
        try:
            return ENGINES[chosen](ctx)
        except RuntimeUnavailable as exc:
            warn(f"auto's cached choice {chosen} cannot run ({exc}); choosing again")
    return None


def _auto_candidates(ctx: BuildContext) -> list[str]:
    if _labelled_val_fits(ctx):
        return list(AUTO_CANDIDATES)
    # int8 is accepted only on a measured mIoU change; without labels that fit, skip the calibration.
    return [n for n in AUTO_CANDIDATES if n not in INT8_RUNTIMES]


def _auto_engine(ctx: BuildContext, calibrate: bool = True) -> Engine:
    fingerprint = _fingerprint(ctx)
    engine = _cached_engine(ctx, fingerprint, partial=False)
    if engine is not None:
        return engine
    full = _auto_candidates(ctx)
    candidates = full
    if not calibrate:  # int8 only where calibrated and checked before (then loading it is cheap)
        candidates = [n for n in full if n not in INT8_RUNTIMES or cached_check(ctx, n, runtime_version(n))]
    partial = candidates != full
    if partial:  # valid only for the same candidates: a runtime calibrated since then means a new choice
        fingerprint = {**fingerprint, "candidates": candidates}
        engine = _cached_engine(ctx, fingerprint, partial=True)
        if engine is not None:
            return engine
    references: dict[bool, Reference] = {}

    def reference(with_miou: bool) -> Reference:
        if with_miou not in references:
            references[with_miou] = build_reference(ctx, TorchEngine(ctx), with_miou=with_miou)
        return references[with_miou]

    def check(engine: Engine) -> dict:
        version = runtime_version(engine.name)
        if engine.name == "torch":
            return {"passed": True, "agreement": 1.0}
        cached = cached_check(ctx, engine.name, version)
        if cached is not None:
            return cached
        return run_check(ctx, engine, reference(engine.name in INT8_RUNTIMES), version)

    ctx.log(f"auto: choosing among {', '.join(candidates)} for {ctx.name} at {ctx.size} ({ctx.threads} threads)"
            + ("; int8 runtimes not calibrated yet are left out" if partial else ""))
    try:
        _, engine = choose(ctx, fingerprint, candidates, lambda n: ENGINES[n](ctx), check, partial=partial)
    except RuntimeUnavailable as exc:
        warn(f"auto could not choose ({exc}); using torch")
        return TorchEngine(ctx)
    return engine


__all__ = ["ENGINES", "RUNTIMES", "FALLBACK", "Engine", "RuntimeUnavailable", "build_engine", "check_engine",
           "parse_runtimes", "runtime_version"]

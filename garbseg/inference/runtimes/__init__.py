"""Inference runtimes behind one interface, their checks against eager PyTorch, and ``auto``.

    engine = build_engine(loaded, "openvino", size=224)   # falls back with a warning if it can't
    logits = engine(batch)                                 # N x 3 x 224 x 224 -> N x C x h x w (h <= 224)
    engine.name                                            # what actually runs

Runtimes (:mod:`.registry`, derived from the engine classes): ``torch`` (eager float32, the
reference), ``torch-opt``, ``onnx``, ``openvino``, ``openvino-bf16``, ``openvino-int8``,
``openvino-int8-bf16``, ``onnx-int8``; ``auto`` (:mod:`.auto`) picks the fastest one that passes its
check (:mod:`.checks`) for this model, size and machine, and remembers the choice.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from ...core.machine import default_threads
from ...core.paths import default_data_dir
from ...models import LoadedModel
from .auto import auto_engine
from .base import BuildContext, Engine, RuntimeUnavailable, warn
from .checks import Reference, build_reference, cached_check, run_check
from .registry import (AUTO, AUTO_CANDIDATES, ENGINES, FALLBACK, INT8_RUNTIMES, RUNTIMES, parse_runtimes,
                       runtime_version, runtimes_help)
from .torch_engines import TorchEngine


def build_context(loaded: LoadedModel, size: int, threads: int | None = None, data_dir=None,
                  log: Callable[[str], None] | None = None, exclusive=None) -> BuildContext:
    """What engines need to build: the model, size, threads, and labelled data for int8 and checks
    (``data_dir``, else the default data folder where it exists); ``exclusive``: see ``BuildContext``."""
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    return BuildContext(loaded, int(size), int(threads or default_threads()), data if data.exists() else None,
                        log or (lambda m: None), exclusive or nullcontext)


def build_engine(loaded: LoadedModel, runtime: str = "torch", *, size: int, threads: int | None = None,
                 data_dir: str | Path | None = None, fallback: bool = True, calibrate: bool = True,
                 log: Callable[[str], None] | None = None, exclusive=None) -> Engine:
    """The engine for ``runtime`` (or ``auto``'s choice). With ``fallback`` a runtime that cannot
    run warns and hands over to the next one in ``FALLBACK``; ``engine.name`` says what runs.
    ``calibrate=False``: ``auto`` leaves out int8 runtimes that were not calibrated and checked yet."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    ctx = build_context(loaded, size, threads, data_dir, log, exclusive)
    if runtime == AUTO:
        return auto_engine(ctx, calibrate)
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
    ctx = build_context(loaded, engine.size, engine.threads, data_dir, log)
    version = runtime_version(engine.name)
    if engine.name == "torch":
        return {"runtime": "torch", "version": version, "agreement": 1.0, "passed": True}
    cached = cached_check(ctx, engine.name, version)
    if cached is not None:
        return cached
    if reference is None:
        reference = build_reference(ctx, TorchEngine(ctx), with_miou=engine.int8)
    return run_check(ctx, engine, reference, version)


__all__ = ["AUTO", "AUTO_CANDIDATES", "ENGINES", "FALLBACK", "INT8_RUNTIMES", "RUNTIMES", "BuildContext", "Engine",
           "RuntimeUnavailable", "build_context", "build_engine", "check_engine", "parse_runtimes",
           "runtime_version", "runtimes_help"]

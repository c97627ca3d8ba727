"""``auto``: per model, input size and machine, the fastest runtime that passes its check.

Every available runtime is built, checked against eager (cached) and timed
(in blocks, several passes over all of them, so load drifting on a busy machine hits all alike). The
choice is cached with the CPU, thread count and package versions it was made under; any change
there triggers a new choice.

Calibrating and checking an int8 runtime on trained weights takes minutes, too long for interactive
use: with ``calibrate=False`` ``auto`` considers only the int8 runtimes whose check is already
cached (from ``bench``, ``benchmarks/runtimes.py`` or ``predict --calibrate``). Such a choice is
cached apart (``auto-<size>-t<threads>-float.json``, keyed by its candidates too); the full choice,
once made, is used either way.
"""

from __future__ import annotations

import time

import torch

from ...core.files import read_json, write_json
from ...core.machine import cpu_name
from ...core.timing import median_ms, time_blocks, time_calls
from ...data import load_dataset
from .base import BuildContext, Engine, RuntimeUnavailable, warn
from .cache import model_dir
from .checks import Reference, build_reference, cached_check, run_check
from .registry import AUTO_CANDIDATES, ENGINES, runtime_version
from .torch_engines import TorchEngine

PASSES = 3  # blocks per runtime; the median over all blocks evens out drifting load


def _choice_file(ctx: BuildContext, partial: bool = False):
    # A choice made without some int8 runtime (not calibrated yet) lives in its own file: it must
    # never stand in for, or overwrite, the choice made among all candidates.
    return model_dir(ctx.loaded) / f"auto-{ctx.size}-t{ctx.threads}{'-float' if partial else ''}.json"


def block_medians(engines: dict[str, Engine], size: int, *, passes: int = PASSES) -> dict[str, float]:
    """Median milliseconds per engine on one random batch-1 input, timed in blocks over ``passes``
    rounds (``garbseg.core.timing.time_blocks``); engines slower than 0.2 s a call get fewer calls."""
    x = torch.randn(1, 3, size, size)
    calls = {name: (lambda engine=engine: engine(x)) for name, engine in engines.items()}
    first = {name: time_calls(fn, warmup=0, runs=1)[0] for name, fn in calls.items()}  # also a warm-up
    slow = {n: fn for n, fn in calls.items() if first[n] > 200}
    fast = {n: fn for n, fn in calls.items() if n not in slow}
    samples = {**time_blocks(fast, warmup=3, runs=7 * passes, passes=passes),
               **time_blocks(slow, warmup=1, runs=3 * passes, passes=passes)}
    return {name: median_ms(samples[name]) for name in engines}


TIMING_COST = 1.0  # the final timing of the passing candidates, in prepare_cost units


def _progress_line(k: int, n: int, name: str, elapsed: float, done_cost: float, total_cost: float) -> str:
    """``auto: [3/8] onnx ... (12 s so far, about 40 s left)``: the estimate scales the time spent so far
    by the candidates' relative ``prepare_cost`` (none before the first cost-bearing one is done)."""
    left = ""
    if done_cost > 0:
        left = f", about {elapsed / done_cost * (total_cost - done_cost):.0f} s left"
    return f"auto: [{k + 1}/{n}] preparing and checking {name} ({elapsed:.0f} s so far{left})"


def cached_choice(ctx: BuildContext, fingerprint: dict, *, partial: bool = False) -> str | None:
    entry = read_json(_choice_file(ctx, partial))
    return entry.get("runtime") if entry.get("fingerprint") == fingerprint else None


def choose(ctx: BuildContext, fingerprint: dict, candidates: list[str], build, check, *,
           partial: bool = False) -> tuple[str, Engine | None]:
    """Build, check and time ``candidates``; cache and return the winner (and its engine).

    ``partial``: some candidate was left out (an int8 runtime not calibrated yet); the choice is
    cached apart from the full one."""
    engines: dict[str, Engine] = {}
    report: dict[str, dict] = {}
    start = time.perf_counter()
    costs = {name: ENGINES[name].prepare_cost if name in ENGINES else 1.0 for name in candidates}
    total_cost = sum(costs.values()) + TIMING_COST
    done_cost = 0.0
    for k, name in enumerate(candidates):
        ctx.log(_progress_line(k, len(candidates), name, time.perf_counter() - start, done_cost, total_cost))
        try:
            engine = build(name)
        except RuntimeUnavailable as exc:
            report[name] = {"usable": False, "reason": str(exc)}
            done_cost += costs[name]
            continue
        result = check(engine)
        done_cost += costs[name]
        report[name] = {"usable": bool(result["passed"]), **{k: v for k, v in result.items() if k != "runtime"}}
        if result["passed"]:
            engines[name] = engine
    if not engines:
        raise RuntimeUnavailable("no runtime passed its check")
    ctx.log(f"auto: timing {', '.join(engines)} at {ctx.size}")
    medians = block_medians(engines, ctx.size)
    for name, ms in medians.items():
        report[name]["median_ms"] = round(ms, 3)
    best = min(medians, key=medians.get)
    write_json(_choice_file(ctx, partial), {"runtime": best, "fingerprint": fingerprint, "candidates": report,
                                   "chosen_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    ctx.log(f"auto: {best} ({medians[best]:.1f} ms; " +
            ", ".join(f"{n} {ms:.1f}" for n, ms in sorted(medians.items(), key=lambda kv: kv[1])) + ")")
    return best, engines[best]


def _labelled_val_fits(ctx: BuildContext) -> bool:
    try:
        return ctx.data_dir is not None and list(load_dataset(ctx.data_dir, "val").classes) == list(ctx.loaded.classes)
    except Exception:  # no val split, unreadable data: nothing to measure int8 against
        return False


def _fingerprint(ctx: BuildContext) -> dict:
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
    return [n for n in AUTO_CANDIDATES if not ENGINES[n].int8]


def auto_engine(ctx: BuildContext, calibrate: bool = True) -> Engine:
    """The engine ``auto`` picks for ``ctx`` (cached choice, else a new one)."""
    fingerprint = _fingerprint(ctx)
    engine = _cached_engine(ctx, fingerprint, partial=False)
    if engine is not None:
        return engine
    full = _auto_candidates(ctx)
    candidates = full
    if not calibrate:  # int8 only where calibrated and checked before (then loading it is cheap)
        candidates = [n for n in full if not ENGINES[n].int8 or cached_check(ctx, n, runtime_version(n))]
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
        return run_check(ctx, engine, reference(engine.int8), version)

    ctx.log(f"auto: choosing among {', '.join(candidates)} for {ctx.name} at {ctx.size} ({ctx.threads} threads)"
            + ("; int8 runtimes not calibrated yet are left out" if partial else ""))
    try:
        _, engine = choose(ctx, fingerprint, candidates, lambda n: ENGINES[n](ctx), check, partial=partial)
    except RuntimeUnavailable as exc:
        warn(f"auto could not choose ({exc}); using torch")
        return TorchEngine(ctx)
    return engine

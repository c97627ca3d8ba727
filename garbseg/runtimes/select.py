"""``auto``: per model, input size and machine, the fastest runtime that passes its check.

Every available runtime is built, checked against eager (cached) and timed
(in blocks, several passes over all of them, so load drifting on a busy machine hits all alike). The
choice is cached with the CPU, thread count and package versions it was made under; any change
there triggers a new choice.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .base import BuildContext, Engine, RuntimeUnavailable
from .cache import model_dir, read_json, write_json

PASSES = 3  # blocks per runtime; the median over all blocks evens out drifting load


def _choice_file(ctx: BuildContext, partial: bool = False):
    # A choice made without some int8 runtime (not calibrated yet) lives in its own file: it must
    # never stand in for, or overwrite, the choice made among all candidates.
    return model_dir(ctx.loaded) / f"auto-{ctx.size}-t{ctx.threads}{'-float' if partial else ''}.json"


def block_medians(engines: dict[str, Engine], size: int, *, passes: int = PASSES) -> dict[str, float]:
    """Median milliseconds per engine on one random batch-1 input.

    Engines are timed in blocks (warm-up, then several calls), passing over all of them ``passes``
    times. Not call-by-call round robin: thread pools of one runtime still spin right after a call
    and would slow the next runtime's call down, which never happens in real use.
    """
    x = torch.randn(1, 3, size, size)
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(passes):
        for name, engine in engines.items():
            t0 = time.perf_counter()
            engine(x)  # warm-up, also the cost estimate
            first = time.perf_counter() - t0
            warmup, runs = (1, 3) if first > 0.2 else (3, 7)
            for _ in range(warmup):
                engine(x)
            for _ in range(runs):
                t0 = time.perf_counter()
                engine(x)
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: float(np.median(s)) for name, s in samples.items()}


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
    for name in candidates:
        try:
            engine = build(name)
        except RuntimeUnavailable as exc:
            report[name] = {"usable": False, "reason": str(exc)}
            continue
        result = check(engine)
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

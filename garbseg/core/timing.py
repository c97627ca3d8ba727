"""The one way garbseg times code: warm-up calls first, then timed calls with ``time.perf_counter``,
summarised by the median and the 95th percentile (never a mean of a few runs).

``time_blocks`` times several callables in blocks, passing over all of them several times: load
that drifts on a busy machine then hits each alike, so their ratios hold. Blocks rather than
call-by-call round robin, because a runtime's thread pool still spins right after its call and would
slow the next runtime's call, which never happens in real use.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np


def time_calls(fn: Callable[[], object], *, warmup: int = 5, runs: int = 20,
               progress: Callable[[int, int], None] | None = None) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if progress:
            progress(i + 1, runs)
    return samples


def time_blocks(fns: dict[str, Callable[[], object]], *, warmup: int = 5, runs: int = 20, passes: int = 2,
                progress: Callable[[int, int], None] | None = None) -> dict[str, list[float]]:
    """Samples (ms) per callable: ``passes`` rounds, each timing every callable in one block of
    ``warmup`` untimed and ``ceil(runs / passes)`` timed calls."""
    per_pass = max(1, -(-runs // passes))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    total, done = passes * len(fns) * per_pass, 0
    for _ in range(passes):
        for name, fn in fns.items():
            def tick(i: int, n: int, base=done) -> None:
                if progress:
                    progress(base + i, total)
            samples[name] += time_calls(fn, warmup=warmup, runs=per_pass, progress=tick)
            done += per_pass
    return samples


def percentile_summary(samples_ms: Iterable[float]) -> dict:
    """p50, p95 (ms) and the FPS the median implies."""
    arr = np.asarray(list(samples_ms), dtype=float)
    p50 = float(np.median(arr))
    return {"latency_p50_ms": p50, "latency_p95_ms": float(np.percentile(arr, 95)), "fps": 1000.0 / p50}


def median_ms(samples_ms: Iterable[float]) -> float:
    return float(np.median(np.asarray(list(samples_ms), dtype=float)))

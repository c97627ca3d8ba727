"""Measure models: latency and throughput, cost (params, GFLOPs, size) and accuracy on a labelled set.

Speed follows the project's rules: batch 1, stated input size and thread count, warm-up runs first,
then N timed runs with ``time.perf_counter``; we report the median and the 95th percentile, never a
mean of a few runs. Every measurement becomes one row of the shared results table (``RESULT_COLUMNS``)
that the CLI writes and the app reads.
"""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Iterable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from PIL import Image
from tqdm.auto import tqdm

from .checkpoints import LoadedModel
from .data import require_classes
from .infer import Predictor, upsample_argmax
from .metrics import ConfusionMatrix, compute_metrics
from .models import count_parameters

# The results-table schema shared by the CLI, the app and benchmarks/ (one row per model, runtime, size).
RESULT_COLUMNS = [
    "model", "runtime", "resolved_runtime", "size", "threads", "trained", "params", "gflops", "size_mb",
    "latency_p50_ms", "latency_p95_ms", "fps", "speedup_vs_torch", "preprocess_ms",
    "miou", "per_class_iou", "precision", "recall", "pixel_accuracy", "num_images",
    "dataset", "cpu", "checkpoint", "parity_agreement", "parity_passed", "int8_miou_delta", "runtime_details",
]


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), falling back to ``platform``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def torch_threads(n: int | None):
    """Pin torch's intra-op threads for the block, then restore them."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or default_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def percentile_summary(samples_ms: Iterable[float]) -> dict:
    arr = np.asarray(list(samples_ms), dtype=float)
    p50 = float(np.median(arr))
    return {"latency_p50_ms": p50, "latency_p95_ms": float(np.percentile(arr, 95)), "fps": 1000.0 / p50}


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


def count_gflops(model: torch.nn.Module, size: int) -> float:
    """GFLOPs of one ``size x size`` forward pass, by torch's own flop counter (1 MAC = 2 FLOPs)."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def file_size_mb(path: Path | None) -> float | None:
    return round(Path(path).stat().st_size / 2**20, 3) if path and Path(path).is_file() else None


def evaluate(predictor: Predictor, dataset, *, batch_size: int = 4, progress: bool = True,
             on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Confusion-matrix metrics of ``predictor`` over the whole ``dataset`` (raw images and masks).

    Predictions are resized back to each label's full resolution before comparing, so the score is
    the one a user sees, independent of the network's input size. Raises ``DatasetError`` when the
    data's classes are not the model's.
    """
    classes = predictor.classes
    require_classes(classes, dataset, model=predictor.loaded.name)
    cm = ConfusionMatrix(len(classes))
    n = len(dataset)
    bar = tqdm(total=n, desc="eval", unit="img", disable=not progress)
    for start in range(0, n, batch_size):
        raws = [dataset.load_raw(i) for i in range(start, min(n, start + batch_size))]
        logits = predictor.logits(predictor.preprocess([im for im, _ in raws]))
        for i, (_, mask) in enumerate(raws):
            cm.update(upsample_argmax(logits[i : i + 1], *mask.shape), mask)
        bar.update(len(raws))
        if on_batch:
            on_batch(min(n, start + batch_size), n)
    bar.close()
    return {**compute_metrics(cm.matrix, classes), "num_images": n, "dataset": dataset.name}


def bench_model(loaded: LoadedModel, *, size: int = 224, threads: int | None = None, warmup: int = 5,
                runs: int = 20, dataset=None, progress: Callable[[int, int], None] | None = None,
                runtime: str = "torch", data_dir=None, torch_ms: float | None = None,
                log: Callable[[str], None] | None = None) -> dict:
    """One results row: cost, latency and (with ``dataset``) accuracy of ``loaded`` on ``runtime``.

    ``runtime`` is what was asked for (``auto`` included); ``resolved_runtime`` what ran after
    ``auto`` and any fallback. ``speedup_vs_torch`` is ``torch_ms`` (eager p50 measured in the same
    run, see :func:`bench_runtimes`) over this row's p50.
    """
    threads = threads or default_threads()
    with torch_threads(threads):
        predictor = Predictor(loaded, size, runtime=runtime, threads=threads, data_dir=data_dir, log=log)
        x = torch.randn(1, 3, size, size)
        samples = time_calls(lambda: predictor.logits(x), warmup=warmup, runs=runs, progress=progress)
    return result_row(loaded, predictor, samples, runtime=runtime, threads=threads, torch_ms=torch_ms,
                      dataset=dataset, data_dir=data_dir, log=log)


def result_row(loaded: LoadedModel, predictor: Predictor, samples: list[float], *, runtime: str, threads: int,
               torch_ms: float | None = None, dataset=None, data_dir=None, log=None) -> dict:
    """The results row of ``predictor`` from its latency samples (adds cost, checks and accuracy)."""
    size = predictor.size
    with torch_threads(threads):
        preprocess_ms = float(np.median(time_calls(lambda: predictor.preprocess([_SAMPLE_IMAGE]), warmup=2, runs=10)))
        checks = _check_columns(loaded, predictor, data_dir, log) if predictor.engine is not None else {}
    summary = percentile_summary(samples)
    if torch_ms is None and predictor.resolved_runtime == "torch":
        torch_ms = summary["latency_p50_ms"]
    row = {
        "model": loaded.name,
        "runtime": runtime,
        "resolved_runtime": predictor.resolved_runtime,
        "size": size,
        "threads": threads,
        "trained": bool(loaded.meta.get("trained", loaded.path is not None)),
        "params": count_parameters(loaded.model),
        "gflops": _cached_gflops(loaded, size),
        "size_mb": file_size_mb(loaded.path),
        **summary,
        "speedup_vs_torch": round(torch_ms / summary["latency_p50_ms"], 3) if torch_ms else None,
        "preprocess_ms": round(preprocess_ms, 3),
        "latency_samples_ms": samples,
        "cpu": cpu_name(),
        "checkpoint": str(loaded.path) if loaded.path else None,
    }
    row.update(checks)
    if dataset is not None:
        with torch_threads(threads):
            metrics = evaluate(predictor, dataset, progress=False)
        row.update({k: metrics[k] for k in ("miou", "per_class_iou", "precision", "recall", "pixel_accuracy",
                                            "num_images", "dataset", "confusion_matrix")})
    return row


# A 640x640 photo-sized image for the preprocessing column (the size of the shared data set's images).
_SAMPLE_IMAGE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (640, 640, 3), dtype=np.uint8))


def _cached_gflops(loaded: LoadedModel, size: int) -> float:
    # Counting runs the model once under a flop counter; one count per model and size is enough.
    cache = loaded.__dict__.setdefault("_gflops", {})
    if size not in cache:
        cache[size] = round(count_gflops(loaded.model, size), 3)
    return cache[size]


def _check_columns(loaded: LoadedModel, predictor: Predictor, data_dir, log) -> dict:
    """Agreement with eager (and the int8 mIoU change) from the runtime's cached check."""
    from .runtimes import check_engine

    check = check_engine(loaded, predictor.engine, data_dir=data_dir, log=log)
    return {"parity_agreement": check.get("agreement"), "parity_passed": check.get("passed"),
            "int8_miou_delta": check.get("miou_delta"), "runtime_details": predictor.engine.details or None}


def bench_runtimes(loaded: LoadedModel, runtimes: list[str], *, size: int = 224, threads: int | None = None,
                   warmup: int = 5, runs: int = 20, dataset=None, data_dir=None, passes: int = 2,
                   section: Callable[[], ContextManager] = nullcontext,
                   log: Callable[[str], None] | None = None) -> list[dict]:
    """One row per runtime for one model, all timed in the same run, with ``speedup_vs_torch``
    against eager torch (timed too when ``torch`` is not among ``runtimes``, then without a row).

    Every runtime is built first; then ``passes`` rounds each time every runtime in a block
    (warm-up, then ``runs / passes`` calls) and the samples are pooled. Drifting load on a busy
    machine thus hits every runtime alike, and ratios stay comparable. ``section()`` wraps each
    round and each build (e.g. pausing another job).
    """
    threads = threads or default_threads()
    order = list(dict.fromkeys(["torch", *runtimes]))
    predictors: dict[str, Predictor] = {}
    with torch_threads(threads):
        for runtime in order:
            with section():
                predictors[runtime] = Predictor(loaded, size, runtime=runtime, threads=threads, data_dir=data_dir,
                                                log=log)
        x = torch.randn(1, 3, size, size)
        samples: dict[str, list[float]] = {r: [] for r in order}
        per_pass = max(1, -(-runs // passes))
        for _ in range(passes):
            with section():
                for runtime in order:
                    samples[runtime] += time_calls(lambda: predictors[runtime].logits(x), warmup=warmup, runs=per_pass)
    torch_ms = float(np.median(samples["torch"]))
    return [result_row(loaded, predictors[r], samples[r], runtime=r, threads=threads, torch_ms=torch_ms,
                       dataset=dataset, data_dir=data_dir, log=log) for r in runtimes]


def rows_to_frame(rows: list[dict]):
    """The results table as a pandas DataFrame with the shared columns first."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    first = [c for c in RESULT_COLUMNS if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def write_results(rows: list[dict], path: str | Path) -> Path:
    """Write rows as ``.json`` (everything) or ``.csv`` (scalar columns; nested ones as JSON text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=2))
    else:
        frame = rows_to_frame(rows).drop(columns=["latency_samples_ms", "confusion_matrix"], errors="ignore")
        for col in ("per_class_iou", "runtime_details"):
            if col in frame:
                frame[col] = frame[col].map(lambda v: json.dumps(v) if isinstance(v, dict) else v)
        frame.to_csv(path, index=False)
    return path

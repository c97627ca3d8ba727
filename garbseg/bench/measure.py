"""Measure models: latency and throughput, cost (params, GFLOPs, size) and accuracy on a labelled set.

Speed follows the project's rules (``garbseg.core.timing``): batch 1, stated input size and thread
count, warm-up runs first, then timed runs; we report the median and the 95th percentile, never a
mean of a few runs. ``bench_runtimes`` is the one measuring pipeline: the app's suite, the CLI's
``bench`` and ``benchmarks/runtimes.py`` all produce their rows through it, so every row has the
same columns (``RESULT_COLUMNS``), ``speedup_vs_torch`` included.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from ..core.machine import cpu_name, default_threads, torch_threads
from ..core.timing import median_ms, percentile_summary, time_blocks, time_calls
from ..inference import Predictor, evaluate
from ..inference.runtimes import check_engine
from ..models import LoadedModel, count_parameters
from ..models.model_card import started_from_imagenet
from .memory import disk_mb, peak_rss_mb

# The results-table schema shared by the CLI, the app and benchmarks/ (one row per model, runtime, size).
RESULT_COLUMNS = [
    "model", "runtime", "resolved_runtime", "size", "threads", "trained", "imagenet_backbone", "params", "gflops",
    "size_mb", "latency_p50_ms", "latency_p95_ms", "fps", "speedup_vs_torch", "preprocess_ms", "peak_rss_mb", "disk_mb",
    "miou", "miou_ci95", "per_class_iou", "precision", "recall", "pixel_accuracy", "num_images",
    "dataset", "cpu", "checkpoint", "parity_agreement", "parity_passed", "int8_miou_delta", "runtime_details",
]
# Accuracy columns a row takes from ``garbseg.inference.evaluate``.
ACCURACY_COLUMNS = ("miou", "miou_ci95", "per_class_iou", "precision", "recall", "pixel_accuracy", "num_images",
                    "dataset", "confusion_matrix", "per_image")
# Lists with one entry per timed run, matrix row or photo: in JSON results, not in one CSV line.
PER_ROW_LISTS = ("latency_samples_ms", "confusion_matrix", "per_image")
ProgressFn = Callable[[int, int], None]


def count_gflops(model: torch.nn.Module, size: int) -> float:
    """GFLOPs of one ``size x size`` forward pass, by torch's own flop counter (1 MAC = 2 FLOPs)."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def file_size_mb(path: Path | None) -> float | None:
    return round(Path(path).stat().st_size / 2**20, 3) if path and Path(path).is_file() else None


def result_row(loaded: LoadedModel, predictor: Predictor, samples: list[float], *, runtime: str, threads: int,
               torch_ms: float | None = None, dataset=None, data_dir=None, log=None, memory: bool = True) -> dict:
    """The results row of ``predictor`` from its latency samples (adds cost, checks and accuracy).

    ``memory``: measure ``peak_rss_mb`` in a forked child (``garbseg.bench.memory``; tens of ms to a
    second per row); ``False`` leaves it ``None``. ``disk_mb`` is always filled (file sizes)."""
    size = predictor.size
    with torch_threads(threads):
        preprocess_ms = median_ms(time_calls(lambda: predictor.preprocess([_SAMPLE_IMAGE]), warmup=2, runs=10))
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
        "trained": loaded.trained,
        # Charts tell a backbone's own ImageNet start apart from none: it decides much of the mIoU here.
        "imagenet_backbone": started_from_imagenet(loaded.meta) if loaded.trained else None,
        "params": count_parameters(loaded.model),
        "gflops": _cached_gflops(loaded, size),
        "size_mb": file_size_mb(loaded.path),
        **summary,
        "speedup_vs_torch": round(torch_ms / summary["latency_p50_ms"], 3) if torch_ms else None,
        "preprocess_ms": round(preprocess_ms, 3),
        "peak_rss_mb": peak_rss_mb(loaded, predictor.resolved_runtime, size=size, threads=threads,
                                   data_dir=data_dir) if memory else None,
        "disk_mb": disk_mb(predictor.engine.details if predictor.engine is not None else None),
        "latency_samples_ms": samples,
        "cpu": cpu_name(),
        "checkpoint": str(loaded.path) if loaded.path else None,
    }
    row.update(checks)
    if dataset is not None:
        with torch_threads(threads):
            metrics = evaluate(predictor, dataset, progress=False)
        row.update({k: metrics[k] for k in ACCURACY_COLUMNS})
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
    check = check_engine(loaded, predictor.engine, data_dir=data_dir, log=log)
    return {"parity_agreement": check.get("agreement"), "parity_passed": check.get("passed"),
            "int8_miou_delta": check.get("miou_delta"), "runtime_details": predictor.engine.details or None}


def bench_runtimes(loaded: LoadedModel, runtimes: list[str], *, size: int | None = None, threads: int | None = None,
                   warmup: int = 5, runs: int = 20, dataset=None, data_dir=None, passes: int = 2,
                   calibrate: bool = True, section: Callable[[], ContextManager] = nullcontext,
                   progress: ProgressFn | None = None, log: Callable[[str], None] | None = None,
                   memory: bool = True) -> list[dict]:
    """One row per runtime for one model, all timed in the same run, with ``speedup_vs_torch``
    against eager torch (timed too when ``torch`` is not among ``runtimes``, then without a row).

    ``size``: the input size (default: the checkpoint's own). Every runtime is built first; then
    ``passes`` rounds each time every runtime in a block (warm-up, then ``runs / passes`` calls) and
    the samples are pooled, so drifting load on a busy machine hits every runtime alike and ratios
    stay comparable. ``section()`` wraps each round and each build (e.g. pausing another job).
    ``calibrate=False``: ``auto`` leaves out int8 runtimes not calibrated yet (as the app does).
    ``progress(done, total)`` counts timed calls. ``memory``: each row's ``peak_rss_mb``, measured
    in a forked child per runtime so other models and runtimes in this process do not pollute it
    (``garbseg.bench.memory``); ``disk_mb``: the runtime's cached files.
    """
    threads = threads or default_threads()
    order = list(dict.fromkeys(["torch", *runtimes]))
    predictors: dict[str, Predictor] = {}
    with torch_threads(threads):
        for runtime in order:
            with section():
                predictors[runtime] = Predictor(loaded, size, runtime=runtime, threads=threads, data_dir=data_dir,
                                                calibrate=calibrate, log=log)
        x = torch.randn(1, 3, predictors["torch"].size, predictors["torch"].size)
        calls = {r: (lambda p=predictors[r]: p.logits(x)) for r in order}
        samples: dict[str, list[float]] = {r: [] for r in order}
        passes = max(1, min(passes, runs))
        shares = [runs // passes + (k < runs % passes) for k in range(passes)]  # exactly ``runs`` in all
        total = runs * len(order)
        for k, share in enumerate(shares):  # one section per round: another job may run between rounds
            base = sum(shares[:k]) * len(order)
            tick = (lambda done, _, base=base: progress(base + done, total)) if progress else None
            with section():
                for runtime, got in time_blocks(calls, warmup=warmup, runs=share, passes=1, progress=tick).items():
                    samples[runtime] += got
    torch_ms = median_ms(samples["torch"])
    return [result_row(loaded, predictors[r], samples[r], runtime=r, threads=threads, torch_ms=torch_ms,
                       dataset=dataset, data_dir=data_dir, log=log, memory=memory) for r in runtimes]


def rows_to_frame(rows: list[dict]):
    """The results table as a pandas DataFrame with the shared columns first."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    first = [c for c in RESULT_COLUMNS if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def write_results(rows: list[dict], path: str | Path) -> Path:
    """Write rows as ``.json`` (everything) or ``.csv`` (one line per row: the bulky per-run and
    per-image lists left out, other nested values as JSON text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=2))
    else:
        frame = rows_to_frame(rows).drop(columns=list(PER_ROW_LISTS), errors="ignore")
        for col in frame.columns:
            frame[col] = frame[col].map(lambda v: json.dumps(v) if isinstance(v, (dict, list)) else v)
        frame.to_csv(path, index=False)
    return path

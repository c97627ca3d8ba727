"""Benchmark several models in one go, as the app does: rows for every model and runtime, problems
collected.

``garbseg.bench.measure.bench_runtimes`` measures one model on its runtimes (the same function the
CLI and ``benchmarks/`` use); this adds what an interactive run needs around it: a labelled set,
models whose classes do not match the data timed without accuracy (and said so), one failing model
not stopping the others, and one overall progress value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..data import SegmentationDataset, available_splits, load_dataset, preferred_split, stratified_sample, subset
from ..models import LoadedModel
from .measure import bench_runtimes

ProgressFn = Callable[[float, str], None]  # (fraction done 0..1, what is happening)


@dataclass
class SuiteResult:
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def open_eval_set(path: str | Path, split: str | None = None, max_images: int | None = None, *,
                  seed: int = 0) -> SegmentationDataset:
    """A labelled set for evaluation: ``split`` (default: val-like) of ``path``; the whole split, or with
    ``max_images`` a class-stratified sample of about that many photos (every class of the split in it)."""
    if not available_splits(path):
        split = None  # a single split folder or file: nothing to choose
    dataset = load_dataset(path, split or preferred_split(path))
    if max_images is not None and max_images < len(dataset):
        subset(dataset, stratified_sample(dataset, max_images, seed=seed))
    return dataset


def evidence(rows: list[dict]) -> dict:
    """What accuracy rows rest on: photos per data set and the classes their labels contain."""
    out: dict[str, dict] = {}
    for row in rows:
        if row.get("per_image"):
            entry = out.setdefault(str(row.get("dataset")), {"images": row["num_images"], "classes": set()})
            entry["classes"] |= {c for image in row["per_image"] for c in image["truth_classes"]}
    return {name: {"images": e["images"], "classes": sorted(e["classes"])} for name, e in out.items()}


def run_suite(names: list[str], get_model: Callable[[str], LoadedModel], *, size: int | None = None,
              threads: int | None = None, warmup: int = 3, runs: int = 10,
              dataset: SegmentationDataset | None = None, runtimes: list[str] | None = None,
              calibrate: bool = False, progress: ProgressFn | None = None) -> SuiteResult:
    """Benchmark every model in ``names`` on every runtime; ``get_model(name)`` supplies the loaded model.

    ``size`` None measures each model at its checkpoint's input size. ``calibrate=False`` (the
    app's default): ``auto`` leaves out int8 runtimes not calibrated yet, as it does on the other pages.
    """
    result = SuiteResult()
    report = progress or (lambda fraction, text: None)
    runtimes = runtimes or ["torch"]
    for i, name in enumerate(names):
        report(i / len(names), f"{name}: loading")
        try:
            loaded = get_model(name)
            data = dataset
            if dataset is not None and list(dataset.classes) != list(loaded.classes):
                result.problems.append(
                    f"{name}: its classes {loaded.classes} differ from the data's {dataset.classes}; "
                    "timed only, no accuracy")
                data = None
            timed_share = 0.8 if data is not None else 1.0

            def step(done: int, total: int, i=i, name=name, data=data, timed_share=timed_share) -> None:
                text = f"{name}: timed run {done}/{total}"
                if done == total and data is not None:
                    text = f"{name}: evaluating on {len(data)} images"
                report((i + timed_share * done / total) / len(names), text)

            result.rows += bench_runtimes(loaded, runtimes, size=size, threads=threads, warmup=warmup, runs=runs,
                                          dataset=data, calibrate=calibrate, progress=step,
                                          log=lambda message, i=i, name=name: report(i / len(names), f"{name}: {message}"))
        except Exception as exc:  # one broken model must not hide the others' results
            result.problems.append(f"{name}: {type(exc).__name__}: {exc}")
    report(1.0, "done")
    return result

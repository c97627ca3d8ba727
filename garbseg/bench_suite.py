"""Benchmark several models in one go, as the app does: one results row each, problems collected.

``garbseg.bench.bench_model`` measures one model; this adds what an interactive run needs around it:
a labelled set trimmed to a few images, models whose classes do not match the data timed without
accuracy (and said so), one failing model not stopping the others, and one overall progress value.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .bench import bench_model
from .checkpoints import LoadedModel
from .data import SegmentationDataset, available_splits, load_dataset
from .uploads import preferred_split

ProgressFn = Callable[[float, str], None]  # (fraction done 0..1, what is happening)


@dataclass
class SuiteResult:
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def supported_runtimes() -> list[str]:
    """Runtimes ``bench_model`` can measure: just eager torch until it takes ``runtime=``."""
    if "runtime" not in inspect.signature(bench_model).parameters:
        return ["torch"]
    try:
        from .runtimes import RUNTIMES
    except ImportError:
        return ["torch"]
    return list(RUNTIMES)


def open_eval_set(path: str | Path, split: str | None = None, max_images: int | None = None) -> SegmentationDataset:
    """A labelled set for evaluation: ``split`` (default: val-like) of ``path``, first ``max_images`` only."""
    if not available_splits(path):
        split = None  # a single split folder or file: nothing to choose
    dataset = load_dataset(path, split or preferred_split(path))
    if max_images is not None and max_images < len(dataset):
        dataset.image_paths = dataset.image_paths[:max_images]
    return dataset


def run_suite(names: list[str], get_model: Callable[[str], LoadedModel], *, size: int = 224,
              threads: int | None = None, warmup: int = 3, runs: int = 10,
              dataset: SegmentationDataset | None = None, runtimes: list[str] | None = None,
              progress: ProgressFn | None = None) -> SuiteResult:
    """Benchmark every model in ``names`` on every runtime; ``get_model(name)`` supplies the loaded model."""
    result = SuiteResult()
    report = progress or (lambda fraction, text: None)
    jobs = [(name, runtime) for name in names for runtime in (runtimes or ["torch"])]
    for i, (name, runtime) in enumerate(jobs):
        title = name if runtime == "torch" else f"{name} on {runtime}"
        report(i / len(jobs), f"{title}: loading")
        try:
            loaded = get_model(name)
            data = dataset
            if dataset is not None and list(dataset.classes) != list(loaded.classes):
                result.problems.append(
                    f"{name}: its classes {loaded.classes} differ from the data's {dataset.classes}; "
                    "timed only, no accuracy")
                data = None

            def step(done: int, total: int, i=i, title=title, data=data) -> None:
                text = f"{title}: timed run {done}/{total}"
                if done == total and data is not None:
                    text = f"{title}: evaluating on {len(data)} images"
                report((i + (0.8 if data is not None else 1.0) * done / total) / len(jobs), text)

            extra = {} if runtime == "torch" else {"runtime": runtime}
            result.rows.append(bench_model(loaded, size=size, threads=threads, warmup=warmup, runs=runs,
                                           dataset=data, progress=step, **extra))
        except Exception as exc:  # one broken model must not hide the others' results
            result.problems.append(f"{title}: {type(exc).__name__}: {exc}")
    report(1.0, "done")
    return result

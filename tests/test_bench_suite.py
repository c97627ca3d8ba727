"""garbseg.bench.suite: what the Benchmark page runs (the results store: test_results_store.py)."""

from __future__ import annotations

import pytest

from garbseg.bench.suite import open_eval_set, run_suite
from garbseg.models import random_model
from garbseg.bench.results import merge_rows

FAST = "mobilenet_v3_large-lraspp"


def test_suite_evaluates_matching_models_times_the_rest_and_survives_failures(tiny_data):
    dataset = open_eval_set(tiny_data, max_images=2)
    assert dataset.name.endswith("/val") and len(dataset) == 2
    models = {FAST: random_model(FAST, dataset.classes, 64),
              "mobilenet_v2-lraspp": random_model("mobilenet_v2-lraspp", ["background", "other"], 64)}

    def get_model(name):
        if name not in models:
            raise RuntimeError("weights are damaged")
        return models[name]

    seen = []
    outcome = run_suite([FAST, "mobilenet_v2-lraspp", "resnet50-fcn"], get_model, size=64, threads=1, warmup=0,
                        runs=2, dataset=dataset, progress=lambda f, text: seen.append((f, text)))
    assert [r["model"] for r in outcome.rows] == [FAST, "mobilenet_v2-lraspp"]
    assert outcome.rows[0]["num_images"] == 2 and outcome.rows[0]["miou"] is not None
    assert "miou" not in outcome.rows[1]  # classes differ from the data: timed only
    assert len(outcome.problems) == 2
    assert "differ from the data" in outcome.problems[0] and "weights are damaged" in outcome.problems[1]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("evaluating on 2 images" in text for _, text in seen)


def test_suite_rows_come_from_the_shared_pipeline_with_speedups(tiny_data):
    """The app's suite measures through bench_runtimes, as the CLI does: each row has speedup_vs_torch,
    and without a size each model runs at its checkpoint's own input size."""
    dataset = open_eval_set(tiny_data, max_images=1)
    loaded = random_model(FAST, dataset.classes, 48)
    outcome = run_suite([FAST], lambda name: loaded, threads=1, warmup=0, runs=2, dataset=dataset,
                        runtimes=["torch", "torch-opt"])
    assert [r["runtime"] for r in outcome.rows] == ["torch", "torch-opt"] and not outcome.problems
    assert all(r["size"] == 48 for r in outcome.rows)
    assert outcome.rows[0]["speedup_vs_torch"] == 1.0 and outcome.rows[1]["speedup_vs_torch"] > 0


def test_results_merge_replaces_same_measurement_and_keeps_others():
    a = {"model": "a", "runtime": "torch", "size": 224, "threads": 2, "dataset": "d", "num_images": 3, "fps": 1}
    b = {**a, "model": "b"}
    a2 = {**a, "fps": 2}
    a512 = {**a, "size": 512}
    assert merge_rows([a, b], [a2, a512]) == [a2, b, a512]


def test_evaluate_raises_a_dataset_error_naming_both_class_lists(tiny_data):
    from garbseg.data import DatasetError, load_dataset
    from garbseg.inference import Predictor, evaluate

    dataset = load_dataset(tiny_data, "val")
    other = random_model(FAST, ["background", "glass", "metal"], 64)
    with pytest.raises(DatasetError) as info:
        evaluate(Predictor(other, 64), dataset, progress=False)
    assert "['background', 'glass', 'metal']" in str(info.value) and str(list(dataset.classes)) in str(info.value)
    same = random_model(FAST, list(dataset.classes), 64)
    assert evaluate(Predictor(same, 64), dataset, progress=False)["num_images"] == len(dataset)

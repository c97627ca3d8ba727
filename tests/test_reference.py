"""The paper's Table 1 as the code holds it, and how it is put beside what is measured here."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from garbseg.present.charts import speed_accuracy_figure
from garbseg.present.reference import NOT_LIKE_FOR_LIKE, PAPER_TABLE1, paper_comparison

CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper-table1.csv"


@pytest.mark.skipif(not CSV.is_file(), reason=f"{CSV} not found")
def test_paper_table_equals_the_published_csv():
    with CSV.open() as f:
        published = list(csv.DictReader(f))
    assert len(PAPER_TABLE1) == len(published) == 3
    for ours, theirs in zip(PAPER_TABLE1, published):
        for key in ("model", "backbone", "head", "hardware", "source"):
            assert ours[key] == theirs[key], key
        for key in ("miou", "precision", "recall", "fps"):
            assert ours[key] == float(theirs[key]), key
        assert ours["input_size"] == int(theirs["input_size"])


def test_the_chart_draws_the_paper_as_its_own_series():
    row = {"model": "mobilenet_v3_large-deeplabv3", "runtime": "torch", "size": 224, "fps": 30.0,
           "latency_p50_ms": 33.3, "miou": 0.47, "miou_ci95": [0.40, 0.55], "trained": True}
    for speed in ("fps", "latency"):
        fig = speed_accuracy_figure([row], speed=speed, reference=list(PAPER_TABLE1))
        paper = [t for t in fig.data if "paper" in t.name]
        assert len(paper) == 1 and len(paper[0].x) == 3 and "A100" in paper[0].name


def test_comparison_puts_the_best_measured_row_beside_each_published_one():
    rows = [{"model": "resnet50-fcn", "runtime": "torch", "resolved_runtime": "torch", "size": 224, "fps": 10.0,
             "miou": 0.46, "miou_ci95": [0.39, 0.53], "precision": 0.7, "recall": 0.71, "trained": True},
            {"model": "resnet50-fcn", "runtime": "auto", "resolved_runtime": "openvino", "size": 224, "fps": 30.0,
             "miou": 0.465, "miou_ci95": [0.40, 0.53], "precision": 0.7, "recall": 0.71, "trained": True}]
    table = {line["model"]: line for line in paper_comparison(rows)}
    assert set(table) == {p["model"] for p in PAPER_TABLE1}
    assert table["resnet50-fcn"]["here FPS (CPU)"] == 30.0 and table["resnet50-fcn"]["paper mIoU"] == 0.8011
    assert table["resnet50-fcn"]["here runtime, size"] == "openvino, 224 px"
    assert table["resnet50-deeplabv3"]["here mIoU"] is None  # not measured: a blank, never a guess
    assert {aspect for aspect, _ in NOT_LIKE_FOR_LIKE} == {"data", "labels", "initialisation", "metric", "hardware"}

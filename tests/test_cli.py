"""The command line as a user runs it: ``python -m garbseg ...`` in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garbseg.models import list_models

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, check=True, env=None):
    result = subprocess.run([sys.executable, "-m", "garbseg", *map(str, args)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("command", ["models", "train", "eval", "predict", "bench"])
def test_every_command_has_help(command):
    out = run_cli(command, "--help").stdout
    assert "usage: python -m garbseg" in out and len(out.splitlines()) > 3


def test_models_json_lists_nine_with_checkpoint_paths():
    rows = json.loads(run_cli("models", "--json").stdout)
    assert [r["name"] for r in rows] == list_models()
    for row in rows:
        assert set(row) == {"name", "backbone", "head", "checkpoint"}
        assert row["name"] == f"{row['backbone']}-{row['head']}"
        if row["checkpoint"] is not None:
            assert Path(row["checkpoint"]).is_file()
    table = run_cli("models").stdout
    assert all(name in table for name in list_models())


def test_eval_json_reports_the_metrics(tiny_run, tiny_data):
    metrics = json.loads(run_cli("eval", "--checkpoint", tiny_run, "--data", tiny_data, "--split", "val",
                                 "--json").stdout)
    for key in ("miou", "per_class_iou", "precision", "recall", "pixel_accuracy", "num_images"):
        assert key in metrics
    assert metrics["num_images"] == 4
    assert set(metrics["per_class_iou"]) == {"background", "red", "blue"}
    # the run recorded the same numbers for its best epoch
    history = json.loads((tiny_run / "history.json").read_text())
    best = max(h["val_miou"] for h in history)
    assert metrics["miou"] == pytest.approx(best, abs=0.02)  # training validates under the same protocol


def test_eval_reports_a_bootstrap_interval_and_one_score_per_photo(tiny_run, tiny_data, tmp_path):
    csv_path = tmp_path / "scores.csv"
    metrics = json.loads(run_cli("eval", "--checkpoint", tiny_run, "--data", tiny_data, "--json",
                                 "--per-image", csv_path).stdout)
    low, high = metrics["miou_ci95"]
    assert low <= metrics["miou"] <= high and metrics["size"] == 64
    names = sorted(p.name for p in (tiny_data / "val" / "images").iterdir())
    assert sorted(e["image"] for e in metrics["per_image"]) == names
    assert all(0.0 <= e["miou"] <= 1.0 and set(e["truth_classes"]) <= {"red", "blue"} for e in metrics["per_image"])
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "image,miou,pixel_accuracy,truth_classes" and len(lines) == 1 + len(names)


def test_eval_flip_scores_the_mirror_too_and_says_so(tiny_run, tiny_data):
    plain = json.loads(run_cli("eval", "--checkpoint", tiny_run, "--data", tiny_data, "--json").stdout)
    flipped = json.loads(run_cli("eval", "--checkpoint", tiny_run, "--data", tiny_data, "--json", "--flip").stdout)
    assert (plain["flip"], flipped["flip"]) == (False, True)
    assert flipped["num_images"] == plain["num_images"] and 0.0 <= flipped["miou"] <= 1.0
    assert "flip-averaged" in run_cli("eval", "--checkpoint", tiny_run, "--data", tiny_data, "--flip").stdout


def test_predict_writes_mask_and_overlay_on_auto_and_calibrates_only_when_asked(tiny_run, tiny_data, tmp_path):
    # The tiny set is the default data here, so its val labels fit the model and int8 could be checked.
    cache = tmp_path / "cache"
    env = {**__import__("os").environ, "GARBSEG_CACHE": str(cache), "GARBSEG_DATA": str(tiny_data)}
    image = next((tiny_data / "val" / "images").iterdir())
    result = run_cli("predict", "--checkpoint", tiny_run, image, "--out", tmp_path / "pred", env=env)
    mask = np.array(Image.open(tmp_path / "pred" / f"{image.stem}_mask.png"))
    overlay = Image.open(tmp_path / "pred" / f"{image.stem}_overlay.png")
    assert mask.shape == (64, 64) and mask.max() < 3
    assert overlay.size == (64, 64)
    assert image.name in result.stdout
    (choice,) = cache.glob("*/auto-64-t*-float.json")  # auto without int8: nothing calibrated
    assert not list(cache.rglob("*int8*"))
    assert f"runtime: {json.loads(choice.read_text())['runtime']} (chosen by auto)" in result.stdout

    result = run_cli("predict", "--checkpoint", tiny_run, image, "--out", tmp_path / "pred", "--calibrate", env=env)
    (full,) = [p for p in cache.glob("*/auto-64-t*.json") if not p.stem.endswith("-float")]
    assert {"onnx-int8", "openvino-int8"} <= set(json.loads(full.read_text())["candidates"])
    assert f"runtime: {json.loads(full.read_text())['runtime']} (chosen by auto)" in result.stdout


def test_predict_flip_says_so_and_writes_the_masks(tiny_run, tiny_data, tmp_path):
    # What flip averaging computes is tested on the predictor (test_runtimes); here, that predict uses it.
    image = sorted((tiny_data / "val" / "images").iterdir())[0]
    result = run_cli("predict", "--checkpoint", tiny_run, image, "--out", tmp_path, "--runtime", "torch", "--flip")
    assert "runtime: torch, each photo and its mirror image averaged" in result.stdout
    assert np.array(Image.open(tmp_path / f"{image.stem}_mask.png")).shape == (64, 64)


def test_predict_reports_unreadable_images(tiny_run, tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("hello")
    result = run_cli("predict", "--checkpoint", tiny_run, bad, "--out", tmp_path / "o", check=False)
    assert result.returncode == 2
    assert "not_an_image.jpg" in result.stderr and "Traceback" not in result.stderr


def test_bench_json_rows(tiny_data, tmp_path):
    # No shipped checkpoint here: the random model takes the tiny set's classes and is scored on it.
    env = {**os.environ, "GARBSEG_CHECKPOINTS": str(tmp_path)}
    rows = json.loads(run_cli("bench", "--model", "mobilenet_v3_large-lraspp", "--size", "64", "--runs", "3",
                              "--warmup", "1", "--threads", "1", "--data", tiny_data, "--json", env=env).stdout)
    assert len(rows) == 1
    row = rows[0]
    for key in ("model", "runtime", "size", "threads", "params", "gflops", "size_mb", "latency_p50_ms",
                "latency_p95_ms", "fps", "trained", "miou", "per_class_iou", "precision", "recall"):
        assert key in row, key
    assert row["size"] == 64 and row["threads"] == 1
    assert row["latency_p95_ms"] >= row["latency_p50_ms"] > 0
    assert row["fps"] == pytest.approx(1000 / row["latency_p50_ms"])
    assert row["params"] > 1e6 and row["gflops"] > 0
    assert row["trained"] is False and row["imagenet_backbone"] is None  # no start to speak of


def test_bench_without_size_measures_each_checkpoint_at_its_own_size(tiny_run, tiny_data, tmp_path):
    env = {**os.environ, "GARBSEG_CACHE": str(tmp_path / "cache")}
    rows = json.loads(run_cli("bench", "--checkpoint", tiny_run, "--runs", "3", "--warmup", "1", "--threads", "1",
                              "--data", tiny_data, "--json", env=env).stdout)
    assert [r["size"] for r in rows] == [64]  # the tiny run trained at 64 px
    assert rows[0]["imagenet_backbone"] is False  # its MobileNetV3 began from random weights
    low, high = rows[0]["miou_ci95"]
    assert low <= rows[0]["miou"] <= high and len(rows[0]["per_image"]) == rows[0]["num_images"] == 4


def test_errors_are_one_line_not_tracebacks(tmp_path):
    result = run_cli("eval", "--checkpoint", tmp_path / "nope.safetensors", check=False)
    assert result.returncode == 2 and result.stderr.startswith("error:") and "Traceback" not in result.stderr
    result = run_cli("train", "--model", "vgg-unet", "--data", tmp_path, check=False)
    assert result.returncode == 2 and "Valid names" in result.stderr
    result = run_cli("eval", "--checkpoint", tmp_path, "--data", tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_eval_stops_on_a_broken_image_unless_asked_to_skip(tiny_run, tiny_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "val" / "images" / "img0.png").write_bytes(b"not a png")
    result = run_cli("eval", "--checkpoint", tiny_run, "--data", data, "--json", check=False)
    assert result.returncode == 2 and "img0.png" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("eval", "--checkpoint", tiny_run, "--data", data, "--json", "--skip-broken")
    assert json.loads(result.stdout)["num_images"] == 3
    assert "img0.png" in result.stderr  # the warning names the file


def test_bench_with_data_of_other_classes_stops_before_timing(tiny_data, tmp_path):
    from garbseg.models import make_metadata, random_model, save_checkpoint
    from garbseg.models.zoo import DEFAULT_CLASSES

    shipped = tmp_path / "checkpoints"  # a "shipped" checkpoint whose classes are not the tiny set's
    loaded = random_model("mobilenet_v3_large-lraspp", DEFAULT_CLASSES, 64)
    shipped.mkdir()
    save_checkpoint(shipped / "mobilenet_v3_large-lraspp.safetensors", loaded.model,
                    make_metadata(loaded.model, classes=DEFAULT_CLASSES, input_size=64, trained=True,
                                  model_kwargs=loaded.meta.model_kwargs))
    cache = tmp_path / "cache"
    env = {**__import__("os").environ, "GARBSEG_CHECKPOINTS": str(shipped), "GARBSEG_CACHE": str(cache)}
    result = run_cli("bench", "--model", "mobilenet_v3_large-lraspp", "--data", tiny_data, "--size", "64",
                     "--runtime", "torch,onnx", "--runs", "3", "--warmup", "1", check=False, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert str(DEFAULT_CLASSES) in errors[0] and "['background', 'red', 'blue']" in errors[0]
    assert " p50 " not in result.stderr  # nothing was timed...
    assert not list(cache.rglob("*.onnx"))  # ...and no runtime was even prepared

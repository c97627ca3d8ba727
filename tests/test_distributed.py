"""torchrun training: two CPU processes (gloo) train exactly as one, and a run whose rank is killed resumes.

The comparisons must hold, not merely tend to: both runs use ``--freeze-bn`` (batch norm in eval mode,
as the paper fine-tuned; otherwise each process would normalise with the statistics of its own half
of the batch) and ``--no-augment`` (no random augmentation: every step sees the same pixels in both
runs). The global batch is the same (4 = 2 per process x 2), and the DistributedSampler hands the
two ranks the halves of the batch a single process would take. What remains is float rounding of
the gradient all_reduce.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from garbseg.core import distributed
from garbseg.data import load_dataset, load_image
from garbseg.data.export import read_cvat_zip
from garbseg.inference import Predictor, evaluate
from garbseg.models.checkpoints import read_metadata
from garbseg.train import TrainConfig, Trainer, train

ROOT = Path(__file__).resolve().parents[1]
EXACT = dict(size=64, resize=64, batch_size=4, lr=1e-3, bf16=False, freeze_bn=True, augment=False)


def _torchrun(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "garbseg", "train", "--model", "mobilenet_v3_large-lraspp", "--data", str(data),
            "--out", str(out), "--epochs", str(epochs), "--size", "64", "--resize", "64", "--batch-size", "4",
            "--lr", "1e-3", "--no-bf16", "--freeze-bn", "--no-augment", *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _one_process(data: Path, out: Path, epochs: int) -> Path:
    train(TrainConfig(model="mobilenet_v3_large-lraspp", data=str(data), out=str(out), epochs=epochs, **EXACT),
          progress=False, log=lambda s: None)
    return out / "last.safetensors"


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_two_processes_train_like_one_with_the_same_global_batch(tiny_data, tmp_path):
    run = subprocess.run(_torchrun(tiny_data, tmp_path / "two", 1), cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "batch 4 in total = 2 per process x 2 processes (DistributedDataParallel, gloo)" in run.stdout
    assert run.stdout.count("best val mIoU") == 1  # rank 0 alone reports
    two = tmp_path / "two" / "last.safetensors"
    meta = read_metadata(two)
    assert meta.world_size == 2 and meta.recipe["batch_size"] == 4 and meta.recipe["batch_per_process"] == 2

    one = _one_process(tiny_data, tmp_path / "one", 1)
    assert read_metadata(one).world_size == 1
    start = {k: v for k, v in Trainer(TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data),
                                                   **EXACT), log=lambda s: None).model.state_dict().items()
             if k in load_file(one)}
    moved = _max_difference(load_file(one), start)
    assert moved > 1e-3  # training did change the weights, by far more than the tolerance below
    assert _max_difference(load_file(one), load_file(two)) < 1e-4
    assert meta.metrics["miou"] == pytest.approx(read_metadata(one).metrics["miou"], abs=1e-6)


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker with RANK=rank among the children of the torchrun process."""
    try:
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    except OSError:
        return None
    for pid in children:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return int(pid)
    return None


def test_run_resumes_after_a_rank_is_killed(tiny_data, tmp_path):
    """Rank 1 is SIGKILLed after the first epoch is saved; torchrun ends the run, and --resume finishes it
    to the weights of one uninterrupted single process."""
    out, epochs = tmp_path / "killed", 4
    launcher = subprocess.Popen(_torchrun(tiny_data, out, epochs), cwd=ROOT, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while not (out / "state.pt").exists() and launcher.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        victim = _rank_pid(launcher.pid, 1)
        assert victim is not None and launcher.poll() is None, "the run ended before a rank could be killed"
        os.kill(victim, signal.SIGKILL)
        assert launcher.wait(timeout=120) != 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
    done = torch.load(out / "state.pt", weights_only=True)["epoch"]
    assert 1 <= done < epochs

    resumed = subprocess.run(_torchrun(tiny_data, out, epochs, "--resume"), cwd=ROOT, env=_env(),
                             capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed {out} after epoch {done}" in resumed.stdout
    assert read_metadata(out / "last.safetensors").epoch == epochs
    one = _one_process(tiny_data, tmp_path / "straight", epochs)
    assert _max_difference(load_file(one), load_file(out / "last.safetensors")) < 1e-4


def test_helpers_answer_for_one_process_without_torchrun():
    assert not distributed.launched_by_torchrun()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard(list(range(5))) == [0, 1, 2, 3, 4]
    counts = np.arange(4, dtype=np.int64).reshape(2, 2)
    assert distributed.all_reduce_sum(counts) is counts
    assert distributed.broadcast_int(7) == 7



def test_predict_and_eval_share_the_photos_over_two_processes(tiny_run, tiny_data, tmp_path):
    """Each rank segments its own photos (disjoint files), rank 0 writes the summary and the exports
    of all of them; eval's confusion matrices summed over ranks give the single-process scores."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "garbseg"]
    out = tmp_path / "pred"
    run = subprocess.run([*launch, "predict", "--checkpoint", str(tiny_run), str(tiny_data), "--out", str(out),
                          "--runtime", "torch", "--export", "coco,cvat"], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "12 of 12 images segmented" in run.stdout
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [row["mask"] for row in rows] == [f"{split}/images/img{i}_mask.png"
                                            for split, n in (("train", 8), ("val", 4)) for i in range(n)]
    predictor = Predictor.from_checkpoint(tiny_run)
    for row in rows:
        expected = predictor.predict(load_image(row["image"]))
        assert np.array_equal(np.array(Image.open(out / row["mask"])), expected), row["mask"]
    assert len(json.loads((out / "coco.json").read_text())["images"]) == 12
    assert len(read_cvat_zip(out / "cvat.zip")[1]) == 12

    two = subprocess.run([*launch, "eval", "--checkpoint", str(tiny_run), "--data", str(tiny_data), "--json"],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert two.returncode == 0, two.stderr[-3000:]
    sharded = json.loads(two.stdout)
    single = evaluate(predictor, load_dataset(tiny_data, "val"), progress=False)
    assert sharded["world_size"] == 2 and sharded["num_images"] == 4
    assert sharded["miou"] == pytest.approx(single["miou"], abs=1e-12)
    assert sharded["per_class_iou"] == pytest.approx(single["per_class_iou"], abs=1e-12)

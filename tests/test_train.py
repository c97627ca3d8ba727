import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from garbseg.models.checkpoints import load_checkpoint, read_metadata
from garbseg.train import TrainConfig, Trainer, lr_factor, train

ROOT = Path(__file__).resolve().parents[1]


def test_run_writes_best_and_last_with_metadata(tiny_run):
    for name in ("best.safetensors", "last.safetensors", "state.pt", "history.json"):
        assert (tiny_run / name).is_file(), name
    meta = read_metadata(tiny_run / "best.safetensors")
    assert meta.model == "mobilenet_v3_large-lraspp"
    assert meta.classes == ["background", "red", "blue"]
    assert meta.recipe["batch_size"] == 4 and meta.recipe["lr"] == 1e-3
    assert meta.data["train_images"] == 8 and meta.data["val_images"] == 4
    assert 0.0 <= meta.metrics["miou"] <= 1.0
    history = json.loads((tiny_run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert max(h["val_miou"] for h in history) == pytest.approx(meta.metrics["miou"], abs=1e-4)
    # state.pt is plain data: it loads with weights_only=True
    state = torch.load(tiny_run / "state.pt", weights_only=True)
    assert state["epoch"] == 2


def test_training_learns_the_tiny_task(tiny_data, tmp_path):
    """Loss falls and the val mIoU beats predicting background everywhere."""
    cfg = TrainConfig(model="mobilenet_v2-lraspp", data=str(tiny_data), out=str(tmp_path / "r"), epochs=4,
                      batch_size=4, size=64, resize=64, lr=3e-3, bf16=False, rotation=0, scale=(1, 1), translate=0,
                      color_jitter=0)
    trainer = train(cfg, progress=False, log=lambda s: None)
    losses = [h["loss"] for h in trainer.history]
    assert losses[-1] < losses[0]
    background_only_miou = 0.8 / 3  # one of three classes right, and not even perfectly
    assert trainer.best_miou > background_only_miou


def test_existing_run_is_not_overwritten(tiny_run, tiny_data):
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), out=str(tiny_run), epochs=2,
                      size=64, resize=64)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, progress=False, log=lambda s: None)


def test_resume_refuses_other_settings(tiny_run, tiny_data):
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), out=str(tiny_run), epochs=3,
                      size=96, resize=96)
    with pytest.raises(ValueError, match="size"):
        Trainer(cfg, progress=False, log=lambda s: None).resume()


def test_lr_schedules():
    cfg = TrainConfig(model="mobilenet_v2-fcn", data=".", epochs=10, warmup_epochs=1)
    assert lr_factor(cfg, 0, 100) == pytest.approx(0.1)
    assert lr_factor(cfg, 10, 100) == pytest.approx(1.0)
    assert lr_factor(cfg, 99, 100) < 0.01
    cfg.schedule = "poly"
    assert 0 < lr_factor(cfg, 55, 100) < 1


def _train_cmd(data, out, epochs, *extra):
    return [sys.executable, "-m", "garbseg", "train", "--model", "mobilenet_v3_large-lraspp", "--data", str(data),
            "--out", str(out), "--epochs", str(epochs), "--batch-size", "2", "--size", "64", "--resize", "64",
            "--lr", "1e-3", "--no-bf16", *extra]


def _history(out: Path) -> list[dict]:
    try:
        return json.loads((out / "history.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_sigkill_mid_epoch_then_resume(tiny_data, tmp_path):
    """A run killed with SIGKILL mid-epoch continues from its last finished epoch and ends where an
    uninterrupted run with the same seed ends."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(tiny_data, out, 6), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(_history(out)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # state.pt is written last: it says which epochs are complete. A kill while the epoch's other
    # files were being written leaves them one epoch ahead, and that epoch is simply redone.
    done = torch.load(out / "state.pt", weights_only=True)["epoch"]
    assert 2 <= done < 6
    assert read_metadata(out / "last.safetensors").epoch in (done, done + 1)
    assert len(_history(out)) in (done, done + 1)

    resumed = subprocess.run(_train_cmd(tiny_data, out, 6, "--resume"), cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {out} after epoch {done}" in resumed.stdout
    history = _history(out)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]

    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(tiny_data, straight, 6), cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=300)
    a = load_checkpoint(out / "last.safetensors").model.state_dict()
    b = load_checkpoint(straight / "last.safetensors").model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)


def test_device_augmentation_budget_and_sparse_validation(tiny_data, tmp_path):
    """The GPU recipe's path on the CPU: batches augmented as tensors, validation every 2 epochs,
    and a time budget that cuts a 50-epoch run to what fits (here: far fewer epochs)."""
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), out=str(tmp_path / "r"), epochs=50,
                      batch_size=4, size=64, resize=64, lr=1e-3, bf16=False, augment_on_device=True,
                      val_every=2, time_budget_s=0.01, probe_epochs=1)
    lines = []
    trainer = train(cfg, progress=False, log=lines.append)
    assert trainer.cfg.epochs == 1 and len(trainer.history) == 1
    assert any("time budget" in line for line in lines)
    meta = read_metadata(tmp_path / "r" / "best.safetensors")
    assert meta.recipe["augment_on_device"] is True and meta.recipe["epochs"] == 1

    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), out=str(tmp_path / "v"), epochs=3,
                      batch_size=4, size=64, resize=64, lr=1e-3, bf16=False, augment_on_device=True, val_every=2)
    history = train(cfg, progress=False, log=lambda s: None).history
    assert ["val_miou" in h for h in history] == [False, True, True]  # every 2nd epoch and the last


def test_bn_momentum_and_backbone_learning_rate(tiny_data):
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), epochs=1, size=64, resize=64,
                      lr=1e-3, backbone_lr_scale=0.1)
    trainer = Trainer(cfg, progress=False, log=lambda s: None)
    momenta = {m.momentum for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}  # torchvision builds this model with 0.01
    backbone, head = trainer.optimizer.param_groups
    assert backbone["lr"] == pytest.approx(1e-4) and head["lr"] == pytest.approx(1e-3)
    assert len(backbone["params"]) > 0 and len(head["params"]) > 0
    cfg.bn_momentum = None
    kept = Trainer(cfg, progress=False, log=lambda s: None).model
    assert 0.01 in {m.momentum for m in kept.modules() if isinstance(m, torch.nn.BatchNorm2d)}


def test_init_from_a_checkpoint_continues_its_weights(tiny_run, tiny_data, tmp_path):
    best = tiny_run / "best.safetensors"
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), out=str(tmp_path / "c"), epochs=1,
                      size=64, resize=64, init_from=str(best))
    trainer = Trainer(cfg, progress=False, log=lambda s: None)
    reference = load_checkpoint(best).model.state_dict()
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    trainer.fit()
    earlier = read_metadata(tmp_path / "c" / "best.safetensors").continued_from
    assert earlier["epoch"] == read_metadata(best).epoch and earlier["checkpoint"] == "best.safetensors"
    assert earlier["val_miou"] == pytest.approx(read_metadata(best).metrics["miou"])
    assert earlier["backbone_init"] == read_metadata(best).backbone_init  # how the weights first began
    assert earlier["data"] == read_metadata(best).data["name"]
    other = TrainConfig(model="mobilenet_v2-lraspp", data=str(tiny_data), epochs=1, size=64, init_from=str(best))
    with pytest.raises(ValueError, match="cannot start"):
        Trainer(other, progress=False, log=lambda s: None)


def test_cli_trains_with_the_gpu_recipe_options(tiny_data, tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(_train_cmd(tiny_data, out, 2, "--augment-on-device", "--val-every", "2",
                                       "--backbone-lr-scale", "0.5", "--bn-momentum", "0.05", "--ema-decay", "0.99"),
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert ["val_miou" in h for h in _history(out)] == [False, True]
    recipe = read_metadata(out / "best.safetensors").recipe
    assert recipe["augment_on_device"] is True and recipe["val_every"] == 2
    assert recipe["backbone_lr_scale"] == 0.5 and recipe["bn_momentum"] == 0.05 and recipe["ema_decay"] == 0.99


def test_weight_ema_arithmetic():
    """Each update moves the average (1 - d) of the way to the model, d warming up as (1+n)/(10+n);
    BatchNorm's integer counter is copied, not averaged."""
    from garbseg.train.weight_average import WeightEMA

    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema = WeightEMA(model, decay=0.5)
    assert not any(p.requires_grad for p in ema.model.parameters())
    with torch.no_grad():
        model[0].weight.fill_(3.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)  # d = min(0.5, 1/10) = 0.1: 1 + 0.9 * (3 - 1)
    assert torch.allclose(ema.model[0].weight, torch.full((2, 2), 2.8))
    assert int(ema.model[1].num_batches_tracked) == 7
    ema.updates = 100  # past the warm-up: d = 0.5
    ema.update(model)
    assert torch.allclose(ema.model[0].weight, torch.full((2, 2), 2.9))
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(model, decay=1.0)


def test_ema_run_saves_and_resumes_the_average(tiny_data, tmp_path):
    """With ema_decay the run validates and saves the averaged weights, not the raw ones, and a
    resumed run continues the average where it stopped."""
    out = tmp_path / "ema"
    cfg = TrainConfig(model="mobilenet_v3_large-lraspp", data=str(tiny_data), out=str(out), epochs=2,
                      batch_size=4, size=64, resize=64, lr=1e-2, bf16=False, ema_decay=0.9)
    trainer = train(cfg, progress=False, log=lambda s: None)
    saved = load_checkpoint(out / "last.safetensors").model.state_dict()
    averaged = trainer.ema.model.state_dict()
    raw = trainer.model.state_dict()
    assert all(torch.allclose(saved[k].float(), averaged[k].float(), atol=1e-6) for k in saved)
    assert any(not torch.allclose(averaged[k].float(), raw[k].float(), atol=1e-4) for k in raw)
    assert read_metadata(out / "best.safetensors").recipe["ema_decay"] == 0.9

    more = TrainConfig(**{**cfg.__dict__, "epochs": 3})
    resumed = Trainer(more, progress=False, log=lambda s: None)
    assert resumed.resume()
    assert resumed.ema.updates == trainer.ema.updates > 0
    assert all(torch.equal(resumed.ema.model.state_dict()[k], v) for k, v in averaged.items())
    without = Trainer(TrainConfig(**{**more.__dict__, "ema_decay": None}), progress=False, log=lambda s: None)
    assert without.resume()  # the raw weights carry on; the average is simply left out
    plain = tmp_path / "plain"
    train(TrainConfig(**{**cfg.__dict__, "out": str(plain), "ema_decay": None}), progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match="weight average"):
        Trainer(TrainConfig(**{**cfg.__dict__, "out": str(plain)}), progress=False, log=lambda s: None).resume()


def _run_files_are_whole(out: Path) -> int:
    """Every file the run holds reads completely; the epoch state.pt says is done (0 without one)."""
    for name in ("last.safetensors", "best.safetensors"):
        if (out / name).exists():
            load_checkpoint(out / name)  # raises on a half-written or damaged file
    if (out / "history.json").exists():
        json.loads((out / "history.json").read_text())
    if not (out / "state.pt").exists():
        return 0
    return int(torch.load(out / "state.pt", weights_only=True)["epoch"])


def _state_stamp(out: Path):
    path = out / "state.pt"
    return path.stat().st_mtime_ns if path.exists() else None


def test_resume_removes_what_a_kill_inside_a_write_leaves_and_nothing_else(tmp_path):
    """A kill inside ``atomic_write`` leaves its ``.partial`` file, or, inside safetensors' ``save_file``
    (which writes through its own ``.tmpXXXXXX`` beside the target), that one too."""
    from garbseg.core.files import remove_partial_writes

    names = [".last.safetensors.k2j9x1.partial", ".tmpH2dI6y", ".other.json.abc.partial", ".tmp-not-ours", "notes.txt"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_partial_writes(tmp_path, ["last.safetensors", "history.json"])
    assert sorted(p.name for p in removed) == [".last.safetensors.k2j9x1.partial", ".tmpH2dI6y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abc.partial", ".tmp-not-ours", "notes.txt"]


def test_ten_sigkills_at_random_moments_lose_at_most_the_epoch_in_progress(tiny_data, tmp_path):
    """SIGKILL at >= 10 random moments, half of them the instant an atomic write's temp file appears
    (mid checkpoint or state write): after each, every file reads whole, no finished epoch is lost, and
    the resume removes the temp files the kill left; the last resume finishes every epoch."""
    import random

    rng = random.Random(15)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out, epochs = tmp_path / "run", 60
    cmd = _train_cmd(tiny_data, out, epochs, "--size", "32", "--resize", "32", "--max-steps-per-epoch", "1",
                     "--limit-val", "1", "--resume")
    kills, done, tries, mid_write = 0, 0, 0, 0
    while kills < 10 and tries < 25:
        tries += 1
        leftovers_before = {p.name for p in out.glob(".*.partial")} if out.exists() else set()
        state_before = _state_stamp(out)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        on_write = kills % 2 == 1
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline:
            if on_write and any(p.name not in leftovers_before for p in out.glob(".*.partial")):
                break
            if not on_write and _state_stamp(out) != state_before:
                # A random moment once the run is under way (an epoch saved), however fast this machine
                # is today: a fixed delay let a quiet machine finish the run before ten kills.
                time.sleep(rng.uniform(0.0, 0.4))
                break
            time.sleep(0.001 if on_write else 0.01)
        if proc.poll() is not None:
            break  # finished before the kill: the run is complete
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        mid_write += bool(list(out.glob(".*.partial")))
        now = _run_files_are_whole(out)
        assert now >= done, f"kill {kills}: state went back from epoch {done} to {now}"
        done = now
    assert kills >= 10 and mid_write >= 3, (kills, mid_write)
    final = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert [h["epoch"] for h in _history(out)] == list(range(1, epochs + 1))
    assert _run_files_are_whole(out) == epochs
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp file left behind

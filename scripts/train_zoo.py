"""Train the shipped model zoo: one recipe per model, resumable, exported to checkpoints/ as float16.

Each model trains in runs/<model>/ (resuming if a run is there), then its best epoch is exported to
checkpoints/<model>.safetensors in float16, re-evaluated from that file in float32 on the val split,
and the reloaded mIoU is compared with the one recorded during training (must agree within 0.005).

Usage: python -m scripts.train_zoo [MODEL ...] [--data DIR] [--device cpu] [--export-only]
The RECIPES below are the record of how every shipped file was trained.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from garbseg.bench import evaluate
from garbseg.checkpoints import CHECKPOINT_DIR, export_checkpoint, read_metadata
from garbseg.data import DEFAULT_DATA_DIR, load_dataset
from garbseg.infer import Predictor
from garbseg.train import TrainConfig, Trainer

# Beyond the seed recipe (7 epochs, lr 1e-4): longer cosine schedules with a warm-up epoch, a higher
# learning rate for heads trained from scratch, the seed's paired augmentation kept.
COMMON = {"warmup_epochs": 1, "schedule": "cosine", "weight_decay": 1e-4}
RECIPES: dict[str, dict] = {
    "mobilenet_v2-lraspp": {"epochs": 25, "lr": 5e-4, "backbone_init": "imagenet"},
    "mobilenet_v2-deeplabv3": {"epochs": 25, "lr": 5e-4, "backbone_init": "imagenet"},
    "mobilenet_v2-fcn": {"epochs": 25, "lr": 5e-4, "backbone_init": "imagenet"},
    "mobilenet_v3_large-lraspp": {"epochs": 30, "lr": 1e-3},
    "mobilenet_v3_large-deeplabv3": {"epochs": 30, "lr": 1e-3},
    "mobilenet_v3_large-fcn": {"epochs": 30, "lr": 1e-3},
    "resnet50-lraspp": {"epochs": 15, "lr": 5e-4},
    "resnet50-fcn": {"epochs": 15, "lr": 5e-4},
    "resnet50-deeplabv3": {"epochs": 15, "lr": 5e-4},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train(name: str, data: str, device: str, runs: Path) -> Trainer:
    cfg = TrainConfig(model=name, data=data, out=str(runs / name), device=device, **{**COMMON, **RECIPES[name]})
    trainer = Trainer(cfg, log=log, progress=False)
    trainer.resume()
    trainer.fit()
    return trainer


def export(name: str, data: str, runs: Path) -> dict:
    """Ship the run's best epoch as float16 and check the file reproduces its float32 val mIoU."""
    best = runs / name / "best.safetensors"
    meta = read_metadata(best)
    val = load_dataset(data, meta["data"]["val_split"], cache=True)
    # The float32 best epoch, scored in float32, is the reference the float16 file must reproduce.
    recorded = evaluate(Predictor.from_checkpoint(best, runtime="torch"), val, progress=False)["miou"]
    shipped = CHECKPOINT_DIR / f"{name}.safetensors"
    export_checkpoint(best, shipped, training_metrics=meta["metrics"])
    metrics = evaluate(Predictor.from_checkpoint(shipped, runtime="torch"), val, progress=False)
    delta = metrics["miou"] - recorded
    keep = ("miou", "per_class_iou", "precision", "recall", "pixel_accuracy", "num_images")
    export_checkpoint(best, shipped, training_metrics=meta["metrics"], metrics={k: metrics[k] for k in keep},
                      fp16_miou_delta=delta)
    log(f"{name}: best epoch {meta['epoch']}/{meta['recipe']['epochs']} val mIoU {recorded:.4f} (float32 weights); "
        f"shipped fp16 file {metrics['miou']:.4f} (delta {delta:+.4f}) -> {shipped} "
        f"({shipped.stat().st_size / 2**20:.1f} MB)")
    if abs(delta) > 0.005:
        log(f"WARNING: {name}: fp16 reload differs by more than 0.005")
    return {"model": name, "miou": metrics["miou"], "delta": delta, "epoch": meta["epoch"],
            "train_seconds": meta.get("train_seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=list(RECIPES), help="models to train (default: all)")
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", default="runs", help="folder for the run folders")
    parser.add_argument("--export-only", action="store_true",
                        help="ship the best epoch of each run as it stands (e.g. of an unfinished run)")
    args = parser.parse_args()
    for name in args.models:
        if not args.export_only:
            train(name, args.data, args.device, Path(args.runs))
        log(json.dumps(export(name, args.data, Path(args.runs))))


if __name__ == "__main__":
    main()

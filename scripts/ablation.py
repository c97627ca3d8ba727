"""What each ingredient of the TrashNet recipe adds: train one model several times, one change each.

    python -m scripts.ablation --train          # the runs (about 35 minutes on 2 cores for the default model)
    python -m scripts.ablation                  # score them -> checkpoints/ablation.json (the model card's table)

The recorded table started from the MobileNetV3-LR-ASPP file as shipped before issue 14 (the full
run of this table then replaced it); to repeat it from that same start:

    mkdir -p runs/before && git show fcefa77:checkpoints/mobilenet_v3_large-lraspp.safetensors \
        > runs/before/mobilenet_v3_large-lraspp.safetensors
    python -m scripts.ablation --start runs/before/mobilenet_v3_large-lraspp.safetensors --train

Every run continues the same start file for the same number of epochs with the ``trashnet``
recipe of ``scripts/train_zoo.py``, adding one ingredient per row: garbage-seg only (the control:
what more epochs alone give), + pseudo-labelled TrashNet, + copy-paste, + distillation. Scores are
``garbseg eval`` on the val split (one confusion matrix over all 60 photos, 95% bootstrap interval
over photos); the runs score the same photos, so the change between rows is what matters.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from garbseg.core.paths import checkpoint_dir, default_data_dir
from garbseg.data import load_dataset
from garbseg.inference import Predictor, evaluate
from garbseg.models.checkpoints import read_metadata

MODEL = "mobilenet_v3_large-lraspp"
# (label, run folder, overrides of the trashnet recipe): each row adds one ingredient to the one above.
ROWS = [
    ("garbage-seg train only (more epochs)", "runs/abl-base",
     ["extra_ratio=0", "copy_paste=0", "teacher=null"]),
    ("+ TrashNet pseudo-labels", "runs/abl-pseudo", ["copy_paste=0", "teacher=null"]),
    ("+ copy-paste", "runs/abl-cp", ["teacher=null"]),
    ("+ distillation from mobilenet_v2-lraspp", "runs/abl-full", []),
]


def train_command(model: str, start: str, runs: str, overrides: list[str]) -> list[str]:
    sets = [arg for item in [f"init_from={start}", *overrides] for arg in ("--set", item)]
    return [sys.executable, "-m", "scripts.train_zoo", model, "--recipe", "trashnet", "--no-ship", "--no-score",
            "--runs", runs, *sets]


def printable(command: list[str]) -> str:
    return shlex.join(["python", *command[1:]])


def score(checkpoint: Path, data: str) -> dict:
    metrics = evaluate(Predictor.from_checkpoint(checkpoint, runtime="torch"), load_dataset(data, "val"),
                       progress=False)
    return {"miou": round(metrics["miou"], 4), "miou_ci95": [round(v, 4) for v in metrics["miou_ci95"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--data", default=str(default_data_dir()))
    parser.add_argument("--start", help="the checkpoint every run continues (default: the shipped file)")
    parser.add_argument("--train", action="store_true", help="train (or resume) the runs first")
    parser.add_argument("--out", default=str(checkpoint_dir() / "ablation.json"))
    args = parser.parse_args()
    start = args.start or str(checkpoint_dir() / f"{args.model}.safetensors")
    if args.train:
        for _, runs, overrides in ROWS:
            subprocess.run(train_command(args.model, start, runs, overrides), check=True)
    rows = [{"label": "start: the file every run continues", "checkpoint": start,
             "command": f"python -m garbseg eval --checkpoint {start} --split val", **score(Path(start), args.data),
             "epoch": read_metadata(start).epoch}]
    for label, runs, overrides in ROWS:
        best = Path(runs) / args.model / "best.safetensors"
        if not best.is_file():
            print(f"{runs}: no run yet (python -m scripts.ablation --train)", file=sys.stderr)
            continue
        meta = read_metadata(best)
        rows.append({"label": label, "train_command": printable(train_command(args.model, start, runs, overrides)),
                     "command": f"python -m garbseg eval --checkpoint {best} --split val", **score(best, args.data),
                     "epoch": meta.epoch, "epochs": meta.recipe.get("epochs"),
                     "train_seconds": meta.train_seconds, "machine": meta.machine})
    for previous, row in zip(rows, rows[1:]):
        row["change"] = round(row["miou"] - previous["miou"], 4)
    Path(args.out).write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")
    for row in rows:
        print(f"{row['miou']:.4f} ({row['miou_ci95'][0]:.3f}-{row['miou_ci95'][1]:.3f})  "
              f"{row.get('change', 0):+.4f}  {row['label']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

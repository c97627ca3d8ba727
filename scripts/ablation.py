"""What each ingredient of the TrashNet recipe adds: train one model several times, one change each.

    python -m scripts.ablation --train          # the runs (8 hours on 2 cores, all eleven studies)
    python -m scripts.ablation                  # score them -> checkpoints/ablation.json (the model card's tables)

Eleven studies, each a table of runs that differ in one ingredient:

``continuation``: every run continues the same start file for the same number of epochs with the
``trashnet`` recipe of ``scripts/train_zoo.py``: garbage-seg only (the control: what more epochs
alone give), + pseudo-labelled TrashNet, + copy-paste, + distillation. The recorded table started
from the MobileNetV3-LR-ASPP file as shipped before issue 14 (the full run then replaced it); to
repeat it from that same start:

    mkdir -p runs/before && git show fcefa77:checkpoints/mobilenet_v3_large-lraspp.safetensors \
        > runs/before/mobilenet_v3_large-lraspp.safetensors
    python -m scripts.ablation --study continuation --start runs/before/mobilenet_v3_large-lraspp.safetensors --train

``pretraining``: runs from scratch with the same recipe (pseudo-labels and copy-paste, no teacher)
and epochs: from a random trunk, from the trunk that ``python -m scripts.pretrain_backbone
mobilenet_v3_large`` pretrained by classification, from the one that ``... --objective distill``
pretrained by feature distillation from the ImageNet MobileNetV2, and from the one that ``...
--objective distill --teacher checkpoints/mobilenet_v2-lraspp.safetensors --out
runs/pretrain/mobilenet_v3_large-distill-garbage`` distilled from the shipped MobileNetV2-LR-ASPP's
trunk (ImageNet, then garbage-seg train). Their files must exist. Each pretrained row's change is
against the random trunk.

``second-round``: self-training's second round. Both runs continue the file the first round made
(the shipped MobileNetV3-LR-ASPP of commit 3c6eb20) with the whole ``trashnet`` recipe; the control
on the first round's pseudo-labels, the other on TrashNet labelled again by the first round's
MobileNetV3 students (``python -m scripts.pseudo_label --round 2 ...``). To repeat it:

    mkdir -p runs/round1 && git show 3c6eb20:checkpoints/mobilenet_v3_large-lraspp.safetensors \
        > runs/round1/mobilenet_v3_large-lraspp.safetensors
    python -m scripts.ablation --study second-round --start runs/round1/mobilenet_v3_large-lraspp.safetensors --train

``blends``: half of each batch blended with a neighbour and taught by the teacher alone
(``distill_mixup``, "function matching"), on the two MobileNetV3 heads that start from the shipped
MobileNetV3-FCN's trunk with the ``distilled`` recipe: the same run without and with blends.

    python -m scripts.ablation --study blends --train     # four 16-epoch runs, 87 minutes on 2 cores

``framing``: the same recipe with blends (the blends study's second row), the photo squared to 384,
288 or 224 pixels before the 224-pixel training crop is cut: how much of the photo a crop shows, and
how large its objects look against inference, where the whole photo is squared to 224.

    python -m scripts.ablation --study framing --train    # 16-epoch runs, 18-24 minutes each on 2 cores

``teachers``: the same recipe with blends, taught by mobilenet_v2-lraspp alone or by the mean class
probabilities of the three MobileNetV2 files (``--set teacher=[...]``, ``garbseg.train.distill.TeacherEnsemble``).

    python -m scripts.ablation --study teachers --train   # 19 and 25 minutes on 2 cores

``distillation-strength``: the same recipe with blends, its distillation loss at temperature 2, or
weighted 3 times against the cross-entropy.

    python -m scripts.ablation --study distillation-strength --train   # 16-epoch runs, about 19 minutes each

``lovasz``: the same recipe with blends, the Lovász-softmax loss (a surrogate of each class's 1 - IoU,
``garbseg.train.lovasz``) added to cross-entropy at weight 1, on both heads that start from FCN's trunk.

    python -m scripts.ablation --study lovasz --train     # 16-epoch runs, 20-25 minutes each

``seeds``: the blended run of the ``distilled`` recipe at seeds 0, 1 and 2 on both heads (the head's
starting weights, the order of the photos, every augmentation): how far apart runs of one recipe land,
the yardstick for every other study's change. ``lovasz-seed-1`` and ``lovasz-seed-2`` repeat the ``lovasz``
study's pairs at those seeds.

    python -m scripts.ablation --study seeds --train      # 16-epoch runs, 20-25 minutes each
    python -m scripts.ablation --study lovasz-seed-1 --study lovasz-seed-2 --train

Scores are ``garbseg eval`` on the val split (one confusion matrix over all 60 photos, 95%
bootstrap interval over photos); the runs score the same photos, so the change between rows is
what matters.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from garbseg.core.paths import checkpoint_dir, default_data_dir
from garbseg.data import load_dataset
from garbseg.inference import Predictor, evaluate
from garbseg.models.checkpoints import read_metadata

MODEL = "mobilenet_v3_large-lraspp"
PRETRAINED_TRUNK = "runs/pretrain/mobilenet_v3_large/trunk.pt"
DISTILLED_TRUNK = "runs/pretrain/mobilenet_v3_large-distill/trunk.pt"
GARBAGE_DISTILLED_TRUNK = "runs/pretrain/mobilenet_v3_large-distill-garbage/trunk.pt"
ROUND2_LABELS = "runs/pseudo/trashnet-round2"
MOBILENET_V2_FILES = ["mobilenet_v2-lraspp", "mobilenet_v2-deeplabv3", "mobilenet_v2-fcn"]


@dataclass(frozen=True)
class Study:
    title: str
    intro: str
    continues_start: bool  # rows continue the start file (and the table opens with its score)
    common: tuple[str, ...]  # trashnet-recipe overrides of every row
    rows: tuple[tuple[str, str, tuple[str, ...]], ...]  # (label, run folder, overrides)
    against_first: bool = False  # each row's change is against the first row, not the row above
    recipe: str = "trashnet"  # the recipe set of scripts/train_zoo.py every row runs
    models: tuple[str, ...] = ()  # the rows run for each of these models; none: the --model one


def lovasz_at_seed(seed: int, models: tuple[str, ...]) -> Study:
    """The ``lovasz`` study's pair again at another seed: the ``seeds`` study's run at that seed, then with the loss."""
    return Study(
        f"a loss that follows IoU, at seed {seed}",
        f"The `lovasz` study's pairs again at seed {seed}: the blended 16-epoch run of the `distilled` "
        "recipe without and with the Lovász-softmax loss at weight 1.",
        False, ("epochs=16", "distill_mixup=0.5", f"seed={seed}"),
        ((f"cross-entropy and distillation (the recipe), seed {seed}", f"runs/seed{seed}", ("lovasz_weight=0",)),
         (f"+ Lovász-softmax, weight 1, seed {seed}", f"runs/lovasz-seed{seed}", ("lovasz_weight=1",))),
        recipe="distilled", models=models)


STUDIES = {
    "continuation": Study(
        "what each ingredient added to a continued run",
        "Each run continues the same start file (the shipped file before these runs) for the same epochs with the "
        "`trashnet` recipe of `scripts/train_zoo.py`, adding one ingredient to the row above.",
        True, (),
        (("garbage-seg train only (more epochs)", "runs/abl-base", ("extra_ratio=0", "copy_paste=0", "teacher=null")),
         ("+ TrashNet pseudo-labels", "runs/abl-pseudo", ("copy_paste=0", "teacher=null")),
         ("+ copy-paste", "runs/abl-cp", ("teacher=null",)),
         ("+ distillation from mobilenet_v2-lraspp", "runs/abl-full", ()))),
    "pretraining": Study(
        "backbone pretraining, from scratch",
        "Runs from scratch, same recipe and epochs (the `trashnet` recipe: pseudo-labelled TrashNet and "
        "copy-paste, no teacher, learning rate 2e-3): a random trunk; the trunk pretrained by classifying "
        "TrashNet photos and garbage-seg train objects (`python -m scripts.pretrain_backbone mobilenet_v3_large`); "
        "the trunk pretrained to reproduce the ImageNet MobileNetV2's features on TrashNet and garbage-seg train "
        "photos (`... --objective distill`); the same from the trunk of the shipped MobileNetV2-LR-ASPP "
        "(ImageNet, then garbage-seg train; `... --objective distill --teacher "
        "checkpoints/mobilenet_v2-lraspp.safetensors`). Each change is against the random trunk.",
        False, ("epochs=12", "lr=2e-3", "weight_decay=1e-2", "teacher=null"),
        (("random trunk", "runs/abl-scratch-random", ("backbone_init=random",)),
         ("trunk pretrained by classification", "runs/abl-scratch-pretrained",
          (f"backbone_init={PRETRAINED_TRUNK}",)),
         ("trunk pretrained by feature distillation from the ImageNet MobileNetV2", "runs/abl-scratch-distilled",
          (f"backbone_init={DISTILLED_TRUNK}",)),
         ("trunk pretrained by feature distillation from the garbage-seg-trained MobileNetV2 (mobilenet_v2-lraspp)",
          "runs/abl-scratch-distilled-garbage", (f"backbone_init={GARBAGE_DISTILLED_TRUNK}",))),
        against_first=True),
    "second-round": Study(
        "a second round of self-training",
        "Both runs continue the same start file, the shipped file the first round made (garbage-seg train, "
        "TrashNet labelled by the MobileNetV2 ensemble, copy-paste, distillation from mobilenet_v2-lraspp), for "
        "the same epochs with the `trashnet` recipe of `scripts/train_zoo.py`. The control trains on the first "
        "round's pseudo-labels again; the second round on TrashNet labelled anew by the three MobileNetV3 "
        "students of the first round (`python -m scripts.pseudo_label --round 2 --photos ../shared/data/trashnet "
        f"--out {ROUND2_LABELS}`). The distillation teacher stays mobilenet_v2-lraspp in both, so the runs differ "
        "in the pseudo-labels alone.",
        True, (),
        (("control: the first round's pseudo-labels (MobileNetV2 ensemble) again", "runs/abl-round1-again", ()),
         ("second round: pseudo-labels remade by the MobileNetV3 students", "runs/abl-round2",
          (f"extra_data={ROUND2_LABELS}",)))),
    "blends": Study(
        "blends taught by the teacher alone",
        "Both runs start afresh with the `distilled` recipe of `scripts/train_zoo.py` (the shipped "
        "MobileNetV3-FCN's trunk at 0.3 times the heads' rate under a new head, garbage-seg train and "
        "pseudo-labelled TrashNet, copy-paste, distillation from mobilenet_v2-lraspp, 16 epochs); the second "
        "blends half of each batch's photos with a neighbour (mixup) and leaves their labels ignored, so the "
        "teacher alone teaches them (`distill_mixup`, \"function matching\", Beyer et al. 2022). The best "
        "epoch is picked on the same 60 photos it is scored on, so the mean of the last six epochs (the "
        "training log's val mIoU, no epoch picked) is the steadier comparison.",
        False, ("epochs=16",),
        (("without blends", "runs/fcn-trunk-slow", ("distill_mixup=0",)),
         ("+ half of each batch blended for the teacher", "runs/fcn-trunk-mixup", ("distill_mixup=0.5",))),
        recipe="distilled", models=("mobilenet_v3_large-lraspp", "mobilenet_v3_large-deeplabv3")),
    "framing": Study(
        "how much of the photo a training crop shows",
        "Training squares each photo to `resize` pixels, zooms it by 0.6-1.7 and cuts a 224-pixel crop; "
        "inference squares the whole photo to 224 pixels. Squared to 384, a crop shows 58% of each side at "
        "zoom 1: objects look 1.7 times larger than at inference, and the head's pooled context is a part of "
        "the photo, not all of it. Squared to 288 a crop shows 78%; squared to 224, the whole photo, as at "
        "inference. Otherwise the `distilled` recipe with blends for 16 epochs, as the blends study's second "
        "row (which is this study's first). Each change is against the first row.",
        False, ("epochs=16", "distill_mixup=0.5"),
        (("squared to 384 (a crop shows 58% of each side)", "runs/fcn-trunk-mixup", ("resize=384",)),
         ("squared to 288 (78%)", "runs/r288", ("resize=288",)),
         ("squared to 224 (the whole photo, as at inference)", "runs/r224", ("resize=224",))),
        against_first=True, recipe="distilled",
        models=("mobilenet_v3_large-lraspp", "mobilenet_v3_large-deeplabv3")),
    "teachers": Study(
        "one teacher or three",
        "The blends study's second run (the `distilled` recipe with blends, 16 epochs), taught by "
        "mobilenet_v2-lraspp alone (val mIoU 0.728) or by the mean class probabilities of the three MobileNetV2 "
        "files, each at its own input size (their ensemble's argmax scores 0.745, and MobileNetV2-DeepLabv3 is "
        "the strongest on glass and metal, the students' weakest classes). The pseudo-labels were already made "
        "by the three; this changes only the soft outputs the student matches.",
        False, ("epochs=16", "distill_mixup=0.5"),
        (("one teacher: mobilenet_v2-lraspp", "runs/fcn-trunk-mixup", ("teacher=mobilenet_v2-lraspp",)),
         ("the mean of the three MobileNetV2 files", "runs/ens-teacher",
          (f"teacher={json.dumps(MOBILENET_V2_FILES)}",))),
        recipe="distilled", models=("mobilenet_v3_large-lraspp",)),
    "distillation-strength": Study(
        "how hard the teacher teaches",
        "The blends study's second run (the `distilled` recipe with blends, 16 epochs, mobilenet_v2-lraspp "
        "teaching), its distillation loss changed: softened at temperature 2 (Hinton et al. 2015: the teacher's "
        "small probabilities, which classes it finds alike, weigh more; the loss is scaled by T^2 so its "
        "gradients keep their size), or weighted 3 times against the labels' cross-entropy, so the student "
        "matches the teacher's answers more than the hard labels. Each change is against the first row.",
        False, ("epochs=16", "distill_mixup=0.5"),
        (("temperature 1, weight 1 (the recipe)", "runs/fcn-trunk-mixup",
          ("distill_temperature=1", "distill_weight=1")),
         ("temperature 2", "runs/kd-t2", ("distill_temperature=2", "distill_weight=1")),
         ("weight 3", "runs/kd-w3", ("distill_temperature=1", "distill_weight=3"))),
        against_first=True, recipe="distilled", models=("mobilenet_v3_large-lraspp",)),
    "lovasz": Study(
        "a loss that follows IoU",
        "The blends study's second run (the `distilled` recipe with blends, 16 epochs), with the Lovász-softmax "
        "loss (Berman et al. 2018; `garbseg.train.lovasz`) added to the labels' cross-entropy at weight 1. "
        "Cross-entropy counts every pixel alike, mIoU every class alike; the Lovász loss is a convex surrogate of "
        "each labelled class's 1 - IoU over the batch, equal to it for a hard prediction.",
        False, ("epochs=16", "distill_mixup=0.5"),
        (("cross-entropy and distillation (the recipe)", "runs/fcn-trunk-mixup", ("lovasz_weight=0",)),
         ("+ Lovász-softmax, weight 1", "runs/lovasz", ("lovasz_weight=1",))),
        recipe="distilled", models=("mobilenet_v3_large-lraspp", "mobilenet_v3_large-deeplabv3")),
    "seeds": Study(
        "the same run, another seed",
        "The blends study's second run (the `distilled` recipe with blends, 16 epochs) again with seeds 1 and 2 "
        "instead of 0: another start for the new head, another order of the photos, other "
        "augmentations, blends and pastes; nothing else differs. The change against seed 0 is what chance alone "
        "moves a 16-epoch run, the yardstick for every other study's change.",
        False, ("epochs=16", "distill_mixup=0.5", "lovasz_weight=0"),
        (("seed 0 (the recipe)", "runs/fcn-trunk-mixup", ("seed=0",)),
         ("seed 1", "runs/seed1", ("seed=1",)),
         ("seed 2", "runs/seed2", ("seed=2",))),
        against_first=True, recipe="distilled",
        models=("mobilenet_v3_large-lraspp", "mobilenet_v3_large-deeplabv3")),
    "lovasz-seed-1": lovasz_at_seed(1, ("mobilenet_v3_large-lraspp", "mobilenet_v3_large-deeplabv3")),
    "lovasz-seed-2": lovasz_at_seed(2, ("mobilenet_v3_large-lraspp", "mobilenet_v3_large-deeplabv3")),
}
LAST_EPOCHS = 6  # beside the best epoch, the steadier figure: mean val mIoU of a run's last epochs, none picked


def train_command(model: str, start: str | None, runs: str, overrides: list[str],
                  recipe: str = "trashnet") -> list[str]:
    items = ([f"init_from={start}"] if start else []) + list(overrides)
    sets = [arg for item in items for arg in ("--set", item)]
    return [sys.executable, "-m", "scripts.train_zoo", model, "--recipe", recipe, "--no-ship", "--no-score",
            "--runs", runs, *sets]


def printable(command: list[str]) -> str:
    return shlex.join(["python", *command[1:]])


def score(checkpoint: Path, data: str) -> dict:
    metrics = evaluate(Predictor.from_checkpoint(checkpoint, runtime="torch"), load_dataset(data, "val"),
                       progress=False)
    return {"miou": round(metrics["miou"], 4), "miou_ci95": [round(v, 4) for v in metrics["miou_ci95"]]}


def last_epochs_miou(run: Path, count: int = LAST_EPOCHS) -> float | None:
    """Mean val mIoU of the run's last ``count`` epochs (its training log), None if it validated fewer."""
    history = json.loads((run / "history.json").read_text()) if (run / "history.json").is_file() else []
    scores = [entry["val_miou"] for entry in history if entry.get("val_miou") is not None]
    return round(sum(scores[-count:]) / count, 4) if len(scores) >= count else None


def run_study(study: Study, model: str, start: str, data: str, train: bool) -> dict:
    """Train (if asked) and score one study's rows, per model; rows whose run does not exist yet are left out."""
    models = study.models or (model,)
    rows = []
    for name in models:
        group = study_rows(study, name, start, data, train)
        if len(models) > 1:
            group = [{**row, "label": f"{name}: {row['label']}"} for row in group]
        rows += group
    return {"title": study.title, "intro": study.intro, "models": list(models), "last_epochs": LAST_EPOCHS,
            "rows": rows}


def study_rows(study: Study, model: str, start: str, data: str, train: bool) -> list[dict]:
    begin = start if study.continues_start else None
    commands = [(label, runs, train_command(model, begin, runs, [*study.common, *overrides], study.recipe))
                for label, runs, overrides in study.rows]
    if train:
        for _, _, command in commands:
            subprocess.run(command, check=True)
    rows = []
    if study.continues_start:
        rows.append({"label": "start: the file every run continues", "checkpoint": start,
                     "command": f"python -m garbseg eval --checkpoint {start} --split val",
                     **score(Path(start), data), "epoch": read_metadata(start).epoch})
    for label, runs, command in commands:
        best = Path(runs) / model / "best.safetensors"
        if not best.is_file():
            print(f"{runs}: no run yet (python -m scripts.ablation --train)", file=sys.stderr)
            continue
        meta = read_metadata(best)
        last = last_epochs_miou(best.parent)
        rows.append({"label": label, "train_command": printable(command),
                     "command": f"python -m garbseg eval --checkpoint {best} --split val", **score(best, data),
                     "epoch": meta.epoch, "epochs": meta.recipe.get("epochs"),
                     "train_seconds": meta.train_seconds, "machine": meta.machine}
                    | ({"last_epochs_miou": last} if last is not None else {}))
    for previous, row in zip(rows, rows[1:]):
        row["change"] = round(row["miou"] - (rows[0] if study.against_first else previous)["miou"], 4)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--data", default=str(default_data_dir()))
    parser.add_argument("--study", choices=sorted(STUDIES), action="append",
                        help="train and score only this study (repeatable; default: all); the others' "
                             "recorded tables are kept")
    parser.add_argument("--start", help="the checkpoint the continuation runs continue (default: the shipped file)")
    parser.add_argument("--train", action="store_true", help="train (or resume) the runs first")
    parser.add_argument("--out", default=str(checkpoint_dir() / "ablation.json"))
    args = parser.parse_args()
    start = args.start or str(checkpoint_dir() / f"{args.model}.safetensors")
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.is_file() else {}
    if record.get("model") != args.model or "studies" not in record:
        record = {"model": args.model, "studies": {}}
    for name in args.study or list(STUDIES):
        record["studies"][name] = run_study(STUDIES[name], args.model, start, args.data, args.train)
    out.write_text(json.dumps(record, indent=2) + "\n")
    for name, table in record["studies"].items():
        print(f"{name}: {table['title']}")
        for row in table["rows"]:
            last = f"  last {LAST_EPOCHS} epochs {row['last_epochs_miou']:.4f}" if "last_epochs_miou" in row else ""
            print(f"  {row['miou']:.4f} ({row['miou_ci95'][0]:.3f}-{row['miou_ci95'][1]:.3f})  "
                  f"{row.get('change', 0):+.4f}  {row['label']}{last}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

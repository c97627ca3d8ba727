"""Published numbers to compare against, kept apart from anything measured here.

``PAPER_TABLE1`` is the seed paper's Table 1 exactly as published ("Swift and Smart: A New Paradigm
for Real-Time Garbage Segmentation": best mIoU, average precision, average recall and FPS of three
models on an NVIDIA A100 GPU), copied from ``shared/reference/paper-table1.csv`` (a test keeps the
two equal). Charts draw it as its own series, never mixed with numbers measured here, and
``NOT_LIKE_FOR_LIKE`` says in one line each why the two cannot be compared point for point.
"""

from __future__ import annotations

PAPER = "Swift and Smart: A New Paradigm for Real-Time Garbage Segmentation, Table 1"
PAPER_HARDWARE = "NVIDIA A100 GPU"


def _row(model: str, miou: float, precision: float, recall: float, fps: float) -> dict:
    backbone, head = model.rsplit("-", 1)
    return {"model": model, "backbone": backbone, "head": head, "miou": miou, "precision": precision,
            "recall": recall, "fps": fps, "latency_p50_ms": round(1000.0 / fps, 3), "hardware": PAPER_HARDWARE,
            "input_size": 224, "source": PAPER}


PAPER_TABLE1: tuple[dict, ...] = (
    _row("resnet50-deeplabv3", 0.7911, 0.8350, 0.8490, 118.48),
    _row("mobilenet_v3_large-deeplabv3", 0.7865, 0.8147, 0.8112, 218.93),
    _row("resnet50-fcn", 0.8011, 0.8129, 0.8039, 170.85),
)

# Why the paper's numbers and ours are not like for like (from its notebook and method page).
NOT_LIKE_FOR_LIKE: tuple[tuple[str, str], ...] = (
    ("data", "the paper: ~8,000 Kaggle 'Garbage Classification' photos, 12 classes; here: garbage-seg, "
             "349 training and 60 validation photos, 6 classes + background"),
    ("labels", "the paper: masks made automatically (Grounding DINO boxes prompting SAM), read as grey/255 so "
               "effectively binary; here: hand-checked polygons with a class per object"),
    ("initialisation", "the paper: ImageNet-pretrained backbones; here: only MobileNetV2 starts from ImageNet, "
                       "MobileNetV3 and ResNet50 from scratch (their ImageNet weights are not available here)"),
    ("metric", "the paper: means of per-batch mIoU, precision and recall; here: one confusion matrix over the "
               "whole split, with a bootstrap 95% interval over images"),
    ("hardware", "the paper: FPS on an NVIDIA A100 GPU, timed without synchronising the GPU; here: batch-1 "
                 "latency on this machine's CPU, median of timed runs after warm-up"),
)


def paper_comparison(rows: list[dict]) -> list[dict]:
    """One line per published model: the paper's figures beside the best measured here for the same
    model (the trained row with the highest FPS among those evaluated), or blanks where not measured."""
    out = []
    for paper in PAPER_TABLE1:
        ours = [r for r in rows if r.get("model") == paper["model"] and r.get("miou") is not None
                and r.get("trained", True)]
        best = max(ours, key=lambda r: r.get("fps") or 0.0, default=None)
        ci = (best or {}).get("miou_ci95")
        out.append({
            "model": paper["model"],
            "paper mIoU": paper["miou"], "here mIoU": best and round(best["miou"], 4),
            "here mIoU 95% CI": f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else None,
            "paper precision": paper["precision"], "here precision": best and _rounded(best.get("precision")),
            "paper recall": paper["recall"], "here recall": best and _rounded(best.get("recall")),
            "paper FPS (A100)": paper["fps"], "here FPS (CPU)": best and _rounded(best.get("fps"), 1),
            "here runtime, size": best and f"{best.get('resolved_runtime') or best.get('runtime')}, {best.get('size')} px",
        })
    return out


def _rounded(value, digits: int = 4):
    return None if value is None else round(float(value), digits)

"""A benchmark report as one self-contained HTML file: machine, results table and interactive charts.

plotly.js is embedded once (with the first figure) so the file opens offline and can be mailed or
archived; later figures reuse it.
"""

from __future__ import annotations

import base64
import html
import io
import time

import pandas as pd
import plotly.graph_objects as go
from PIL import Image

from ..bench.measure import rows_to_frame
from .charts import (confusion_matrix_figure, latency_distribution_figure, per_class_iou_figure, row_label,
                     speed_accuracy_figure)
from .reference import NOT_LIKE_FOR_LIKE, PAPER, PAPER_HARDWARE, paper_comparison

# Columns shown in the report's table (nested values such as per-class IoU live in the charts).
TABLE_COLUMNS = ["model", "runtime", "resolved_runtime", "size", "threads", "trained", "imagenet_backbone", "params",
                 "gflops", "size_mb", "latency_p50_ms", "latency_p95_ms", "fps", "speedup_vs_torch", "peak_rss_mb",
                 "disk_mb", "miou", "miou_ci95", "precision", "recall", "pixel_accuracy", "num_images", "dataset"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; } th, td { border: 1px solid #ccc; padding: 3px 6px; }
th { background: #f3f3f3; } .note { color: #555; }
"""


# Digits worth showing: timings drift by more than 0.1 ms between runs, scores beyond 3 decimals are noise.
_ROUNDING = {"gflops": 2, "size_mb": 1, "peak_rss_mb": 1, "disk_mb": 1, "latency_p50_ms": 1, "latency_p95_ms": 1,
             "fps": 2, "speedup_vs_torch": 2, "miou": 3, "precision": 3, "recall": 3, "pixel_accuracy": 3}


def results_table(rows: list[dict]):
    """The results as a DataFrame of the report's columns, rounded for reading."""
    frame = rows_to_frame(rows)
    frame = frame[[c for c in TABLE_COLUMNS if c in frame.columns]].copy()
    for column, digits in _ROUNDING.items():
        if column in frame:
            frame[column] = frame[column].astype(float).round(digits)
    if "miou_ci95" in frame:
        frame["miou_ci95"] = frame["miou_ci95"].map(
            lambda ci: f"{ci[0]:.3f}-{ci[1]:.3f}" if isinstance(ci, (list, tuple)) and len(ci) == 2 else None)
    return frame


def _png_data_uri(image: Image.Image, max_side: int = 480) -> str:
    small = image.copy()
    small.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def results_table_html(rows: list[dict]) -> str:
    return results_table(rows).to_html(index=False, na_rep="", border=0)


def build_report(rows: list[dict], figures: list[tuple[str, go.Figure]], *, title: str = "garbseg benchmark",
                 notes: list[str] | None = None, samples: list[tuple[str, Image.Image]] | None = None) -> str:
    """The whole HTML document as text: machine, results, the paper's Table 1 beside ours (with why
    they are not like for like), the figures, and ``samples`` (captioned pictures, e.g. overlays)."""
    cpus = sorted({str(r.get("cpu")) for r in rows if r.get("cpu")})
    threads = sorted({r.get("threads") for r in rows if r.get("threads") is not None})
    parts = [
        "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Generated {time.strftime('%Y-%m-%d %H:%M')} on {html.escape(', '.join(cpus) or 'unknown CPU')}"
        f" with {', '.join(map(str, threads)) or '?'} thread(s). Batch 1; latency is the median (p50) and 95th"
        " percentile of timed runs after warm-up.</p>",
    ]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes or []]
    parts += ["<h2>Results</h2>", f"<div style='overflow-x:auto'>{results_table_html(rows)}</div>"]
    if any(r.get("miou") is not None for r in rows):
        comparison = pd.DataFrame(paper_comparison(rows)).to_html(index=False, na_rep="not measured", border=0)
        reasons = "".join(f"<li><b>{html.escape(a)}</b>: {html.escape(why)}</li>" for a, why in NOT_LIKE_FOR_LIKE)
        parts += ["<h2>The paper beside us</h2>", f"<p class='note'>{html.escape(PAPER)} ({PAPER_HARDWARE}), as "
                  "published; here: this machine. Not like for like:</p>", f"<ul>{reasons}</ul>",
                  f"<div style='overflow-x:auto'>{comparison}</div>"]
    for i, (heading, fig) in enumerate(figures):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0), default_height="480px"))
    if samples:
        parts.append("<h2>Sample overlays</h2><div>")
        parts += [f"<figure style='display:inline-block;margin:4px'><img width='240' src='{_png_data_uri(image)}'>"
                  f"<figcaption class='note'>{html.escape(caption)}</figcaption></figure>" for caption, image in samples]
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def standard_figures(rows: list[dict], reference: list[dict] | None = None) -> list[tuple[str, go.Figure]]:
    """The report's charts: speed vs accuracy (FPS and latency), IoU per class, latency spread, and the
    confusion matrix of every evaluated row."""
    figures = []
    evaluated = [r for r in rows if r.get("miou") is not None]
    if evaluated:
        figures.append(("Speed vs accuracy (FPS)", speed_accuracy_figure(rows, speed="fps", reference=reference)))
        figures.append(("Speed vs accuracy (latency)",
                        speed_accuracy_figure(rows, speed="latency", reference=reference)))
        figures.append(("IoU per class", per_class_iou_figure(rows)))
    figures.append(("Latency distribution", latency_distribution_figure(rows)))
    for r in evaluated:
        if r.get("confusion_matrix") and r.get("per_class_iou"):
            figures.append((f"Confusion matrix - {row_label(r)}",
                            confusion_matrix_figure(r["confusion_matrix"], list(r["per_class_iou"]),
                                                    title=row_label(r))))
    return figures

"""Every Plotly figure the app and the HTML report show: speed vs accuracy with its Pareto front,
per-class IoU, confusion matrix, latency distributions, per-frame video latency. Figures are
returned, never shown; nothing here imports Streamlit.
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from ..models import UNTRAINED


PAPER_SERIES = "paper, A100 GPU (published, not measured here)"
PARETO_SERIES = "Pareto front (trained models, measured)"
IMAGENET_SERIES = "measured here - backbone from its ImageNet weights"
NO_IMAGENET_SERIES = "measured here - backbone without ImageNet weights"
_SPEED_AXES = {
    "fps": ("fps", "Throughput (FPS, batch 1; higher is better)", True),
    "latency": ("latency_p50_ms", "Latency p50 (ms, batch 1; lower is better)", False),
    # Not speed, but the other cost an edge-device engineer chooses on (garbseg.bench.memory).
    "memory": ("peak_rss_mb", "Peak memory of the model on its runtime (MiB; lower is better)", False),
    "disk": ("disk_mb", "Cached runtime files on disk (MiB; lower is better)", False),
}


def _trained(row: dict) -> bool:
    return bool(row.get("trained", True))  # rows from before the flag existed were all trained


def row_label(row: dict) -> str:
    """A results row's name in charts: model, runtime when not torch, input size; untrained flagged."""
    runtime = row.get("runtime") or "torch"
    name = f"{row['model']} ({'' if runtime == 'torch' else runtime + ', '}{row.get('size', '?')} px)"
    return name if _trained(row) else f"{name} - {UNTRAINED}"


def pareto_front(xs, ys, *, maximize_x: bool = True, maximize_y: bool = True) -> list[int]:
    """Indices of the points no other point beats on both axes, ordered along x.

    A point is dominated when another is at least as good on both axes and better on one. Points
    with a missing (None/NaN) coordinate are never on the front.
    """
    x = np.asarray([np.nan if v is None else v for v in xs], dtype=float)
    y = np.asarray([np.nan if v is None else v for v in ys], dtype=float)
    sx = x if maximize_x else -x
    sy = y if maximize_y else -y
    valid = np.flatnonzero(~(np.isnan(sx) | np.isnan(sy)))
    front = []
    for i in valid:
        others = valid[valid != i]
        dominated = (sx[others] >= sx[i]) & (sy[others] >= sy[i]) & ((sx[others] > sx[i]) | (sy[others] > sy[i]))
        if not dominated.any():
            front.append(int(i))
    return sorted(front, key=lambda i: (x[i], y[i]))


def _hover(row: dict) -> str:
    def fmt(key, spec, unit=""):
        value = row.get(key)
        return "n/a" if value is None else f"{value:{spec}}{unit}"

    return "<br>".join([
        f"<b>{html.escape(row_label(row))}</b>",
        f"latency p50 {fmt('latency_p50_ms', '.1f', ' ms')}, p95 {fmt('latency_p95_ms', '.1f', ' ms')}",
        f"{fmt('fps', '.1f')} FPS at {row.get('threads', '?')} threads",
        f"mIoU {fmt('miou', '.3f')}"
        + (f" (95% CI {row['miou_ci95'][0]:.3f}-{row['miou_ci95'][1]:.3f})" if row.get("miou_ci95") else "")
        + f" on {html.escape(str(row.get('dataset') or 'no data'))} ({row.get('num_images', 0) or 0} images)",
        f"params {fmt('params', ',d')}, {fmt('gflops', '.2f')} GFLOPs, file {fmt('size_mb', '.1f', ' MB')}",
        html.escape(str(row.get("cpu") or "")),
    ])


def interval_overlaps(rows: list[dict]) -> list[tuple[str, str]]:
    """Pairs of rows (by label) whose mIoU 95% intervals overlap: this data cannot order them."""
    with_ci = [r for r in rows if r.get("miou_ci95")]
    pairs = []
    for i, a in enumerate(with_ci):
        for b in with_ci[i + 1:]:
            if a["miou_ci95"][0] <= b["miou_ci95"][1] and b["miou_ci95"][0] <= a["miou_ci95"][1]:
                pairs.append((row_label(a), row_label(b)))
    return pairs


def _error_bars(rows: list[dict]) -> dict | None:
    if not any(r.get("miou_ci95") for r in rows):
        return None
    ci = [r.get("miou_ci95") or (r["miou"], r["miou"]) for r in rows]
    return {"type": "data", "symmetric": False, "thickness": 1.5, "width": 4,
            "array": [high - r["miou"] for r, (_, high) in zip(rows, ci)],
            "arrayminus": [r["miou"] - low for r, (low, _) in zip(rows, ci)]}


# Measured points, one series each: trained models by where their backbone began (an ImageNet start
# decides much of the mIoU on 349 training photos, so a backbone without one must not look like a
# bad architecture), then untrained ones. Rows from older results files lack the start: plain series.
_MEASURED_SERIES = (
    (IMAGENET_SERIES, "circle", lambda r: _trained(r) and r.get("imagenet_backbone") is True),
    (NO_IMAGENET_SERIES, "circle-open", lambda r: _trained(r) and r.get("imagenet_backbone") is False),
    ("measured here", "circle", lambda r: _trained(r) and r.get("imagenet_backbone") is None),
    (f"measured here - {UNTRAINED}", "x", lambda r: not _trained(r)),
)


def speed_accuracy_figure(rows: list[dict], *, speed: str = "fps", reference: list[dict] | None = None) -> go.Figure:
    """mIoU against FPS (``speed="fps"``) or p50 latency (``"latency"``), one point per measured row with
    its 95% bootstrap interval as an error bar, the Pareto front of the measured *trained* models as a
    line (with a note naming front models whose intervals overlap), and optional published
    ``reference`` points (dicts with model, fps or latency_p50_ms, miou, hardware) as a separate series."""
    if speed not in _SPEED_AXES:
        raise ValueError(f"speed must be one of {list(_SPEED_AXES)}, not {speed!r}")
    key, axis_title, higher_better = _SPEED_AXES[speed]
    measured = [r for r in rows if r.get("miou") is not None and r.get(key) is not None]
    fig = go.Figure()
    for name, symbol, belongs in _MEASURED_SERIES:
        part = [r for r in measured if belongs(r)]
        if part:
            fig.add_trace(go.Scatter(
                x=[r[key] for r in part], y=[r["miou"] for r in part], mode="markers+text", name=name,
                text=[f"{r['model']} {r.get('size', '?')}px" for r in part], textposition="top center",
                cliponaxis=False, error_y=_error_bars(part),
                marker={"size": 11, "symbol": symbol}, hovertext=[_hover(r) for r in part], hoverinfo="text"))
    # Untrained models are no trade-off anyone would make (fast, but their mIoU is chance): the
    # front runs through trained models only, or an untrained one at 200 FPS would anchor it.
    trained = [r for r in measured if _trained(r)]
    front = pareto_front([r[key] for r in trained], [r["miou"] for r in trained], maximize_x=higher_better)
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[trained[i][key] for i in front], y=[trained[i]["miou"] for i in front],
                                 mode="lines", name=PARETO_SERIES, hoverinfo="skip",
                                 line={"dash": "dash", "color": "#636363"}))
    overlaps = interval_overlaps([trained[i] for i in front])
    if overlaps:
        fig.add_annotation(text="On the front, mIoU intervals overlap for: " + "; ".join(
            f"{html.escape(a)} ~ {html.escape(b)}" for a, b in overlaps) + " (this data does not order them)",
            xref="paper", yref="paper", x=0, y=1.08, showarrow=False, align="left", font={"size": 11})
    ref = [p for p in (reference or []) if p.get(key) is not None and p.get("miou") is not None]
    if ref:
        fig.add_trace(go.Scatter(
            x=[p[key] for p in ref], y=[p["miou"] for p in ref], mode="markers+text", name=PAPER_SERIES,
            text=[f"{p['model']} {p.get('input_size', '?')}px" for p in ref], textposition="bottom center",
            cliponaxis=False, marker={"size": 11, "symbol": "diamond-open", "color": "#7f7f7f"},
            hovertext=[f"<b>{html.escape(p['model'])}</b><br>{html.escape(p.get('hardware', ''))} (published)"
                       f"<br>mIoU {p['miou']:.3f}" + (f", {p['fps']:.1f} FPS" if p.get("fps") else "")
                       + f"<br>{html.escape(p.get('source', ''))}"
                       for p in ref], hoverinfo="text"))
    xs = [r[key] for r in measured] + [p[key] for p in ref]
    log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20
    fig.update_layout(title=("Memory" if speed in ("memory", "disk") else "Speed") + " vs accuracy",
                      xaxis_title=axis_title, yaxis_title="mIoU",
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 90, "l": 90, "r": 90})
    fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_yaxes(rangemode="tozero")
    return fig


def per_class_iou_figure(rows: list[dict]) -> go.Figure:
    """Heatmap of IoU per class (columns) for each evaluated row (rows); blank where undefined."""
    evaluated = [r for r in rows if r.get("per_class_iou")]
    classes: list[str] = []
    for r in evaluated:
        classes += [c for c in r["per_class_iou"] if c not in classes]
    z = [[np.nan if r["per_class_iou"].get(c) is None else r["per_class_iou"][c] for c in classes] for r in evaluated]
    labels = [row_label(r) for r in evaluated]
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in line] for line in z]
    fig = go.Figure(go.Heatmap(z=z, x=classes, y=labels, zmin=0, zmax=1, colorscale="Viridis", text=text,
                               texttemplate="%{text}", hovertemplate="%{y}<br>%{x}: IoU %{z:.3f}<extra></extra>",
                               colorbar={"title": "IoU"}))
    fig.update_layout(title="IoU per class", height=max(260, 80 + 40 * len(labels)), margin={"l": 10})
    fig.update_yaxes(autorange="reversed")
    return fig


def confusion_matrix_figure(matrix, classes: list[str], *, title: str = "Confusion matrix") -> go.Figure:
    """Rows = truth, columns = prediction, each row as a share of that class's true pixels."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
    text = [["" if np.isnan(v) else f"{100 * v:.0f}%" for v in line] for line in shares]
    fig = go.Figure(go.Heatmap(
        z=shares, x=classes, y=classes, zmin=0, zmax=1, colorscale="Blues", text=text, texttemplate="%{text}",
        customdata=counts, colorbar={"title": "share of row"},
        hovertemplate="truth %{y}<br>predicted %{x}<br>%{z:.1%} of the class (%{customdata:,.0f} px)<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="truth", height=120 + 45 * len(classes))
    fig.update_yaxes(autorange="reversed")
    return fig


def latency_distribution_figure(rows: list[dict], *, kind: str = "box") -> go.Figure:
    """Distribution of the timed runs (``latency_samples_ms``) per row, as box or violin plots."""
    if kind not in ("box", "violin"):
        raise ValueError(f"kind must be box or violin, not {kind!r}")
    fig = go.Figure()
    for r in rows:
        # A row kept without its samples (an older results file) still shows its median and p95.
        samples = r.get("latency_samples_ms") or [v for v in (r.get("latency_p50_ms"), r.get("latency_p95_ms")) if v]
        if not samples:
            continue
        if kind == "box":
            fig.add_trace(go.Box(y=samples, name=row_label(r), boxpoints="all", jitter=0.4, pointpos=0))
        else:
            fig.add_trace(go.Violin(y=samples, name=row_label(r), box_visible=True, points="all"))
    fig.update_layout(title="Latency of each timed run (batch 1)", yaxis_title="ms", showlegend=False)
    return fig


def frame_latency_figure(latencies_ms: list[float], *, window: int = 10) -> go.Figure:
    """Per-frame latency of a video run, with the FPS those latencies allow (rolling mean) on a 2nd axis."""
    lat = np.asarray(latencies_ms, dtype=float)
    frames = np.arange(1, lat.size + 1)
    # Mean of the last `window` latencies (fewer at the start, so the line begins at frame 1).
    sums = np.concatenate([[0.0], np.cumsum(lat)])
    starts = np.maximum(frames - window, 0)
    rolling = (sums[frames] - sums[starts]) / (frames - starts)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=frames, y=lat, mode="lines+markers", name="latency (ms)", marker={"size": 4}))
    fig.add_trace(go.Scatter(x=frames, y=1000.0 / rolling, mode="lines", name=f"FPS (rolling {window} frames)",
                             yaxis="y2"))
    fig.update_layout(title="Per-frame latency", xaxis_title="segmented frame", yaxis_title="ms",
                      yaxis2={"title": "FPS", "overlaying": "y", "side": "right", "rangemode": "tozero",
                              "tickformat": ".1f", "showgrid": False},
                      legend={"orientation": "h", "y": -0.25})
    return fig

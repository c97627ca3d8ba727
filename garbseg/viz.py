"""Pictures of results, as pure functions: palettes, colour masks, overlays and outlines for
predictions, the class legend, and every Plotly figure the app and the HTML report show
(speed vs accuracy with its Pareto front, per-class IoU, confusion matrix, latency distributions,
per-frame video latency). Nothing here imports Streamlit; figures are returned, never shown.
"""

from __future__ import annotations

import colorsys
import html

import numpy as np
import plotly.graph_objects as go
from PIL import Image

try:  # OpenCV blends and looks up colours ~10x faster than numpy; optional (numpy fallback below)
    import cv2
except ImportError:  # pragma: no cover - exercised by monkeypatching cv2 to None
    cv2 = None

# Background is black; classes get well separated, saturated hues.
_BASE_COLOURS = [
    (0, 0, 0), (46, 204, 64), (177, 119, 59), (0, 190, 255), (160, 160, 175),
    (255, 220, 0), (255, 65, 54), (240, 18, 190), (255, 133, 27), (61, 153, 112),
    (127, 219, 255), (133, 20, 75), (1, 255, 112),
]


def palette(num_classes: int) -> np.ndarray:
    """``num_classes x 3`` uint8 colours; index 0 (background) is black."""
    colours = list(_BASE_COLOURS[:num_classes])
    for i in range(len(colours), num_classes):  # more classes than base colours: golden-ratio hues
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.asarray(colours, dtype=np.uint8)


def colour_hex(num_classes: int) -> list[str]:
    return ["#%02x%02x%02x" % tuple(c) for c in palette(num_classes)]


def _colour_table(num_classes: int) -> np.ndarray:
    """``256 x 3`` uint8: the palette, then white for ignore/out-of-range ids."""
    return np.vstack([palette(num_classes), np.full((256 - num_classes, 3), 255, np.uint8)])


def colorize(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """``H x W x 3`` colours of a class-id mask (ignore/out-of-range ids shown as white)."""
    table = _colour_table(num_classes)
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if cv2 is not None:  # one 256-entry lookup per channel
        return cv2.merge([cv2.LUT(mask, np.ascontiguousarray(table[:, c])) for c in range(3)])
    return np.take(table, mask, axis=0)


def mask_to_png(mask: np.ndarray, num_classes: int) -> Image.Image:
    """A palette ("P") image: pixel values are the class ids, viewers still show colours."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(palette(num_classes).flatten().tolist())
    return image


def outline(mask: np.ndarray) -> np.ndarray:
    """Boolean map of pixels whose right or lower neighbour has another class."""
    edge = np.zeros(mask.shape, bool)
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
    edge[:, 1:] |= edge[:, :-1].copy()
    edge[1:, :] |= edge[:-1, :].copy()
    return edge


def overlay(image: Image.Image, mask: np.ndarray, num_classes: int, *, alpha: float = 0.5,
            style: str = "overlay") -> Image.Image:
    """Draw ``mask`` on ``image``: ``overlay`` blends class colours where the class is not background,
    ``mask`` shows the colour mask alone, ``outline`` draws class borders only.

    Blending is done in uint8, within one grey level of ``round((1 - alpha) * pixel + alpha * colour)``:
    OpenCV's ``addWeighted`` over the frame, then only the non-background pixels copied over the photo
    (a 640x640 frame in well under 2 ms; float32 over the whole frame took ~30-50 ms). Without OpenCV,
    numpy in 8-bit fixed point.
    """
    rgb = np.asarray(image.convert("RGB"))
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but mask is {mask.shape[1]}x{mask.shape[0]}")
    if style not in ("overlay", "mask", "outline"):
        raise ValueError(f"style must be overlay, mask or outline, not {style!r}")
    colours = colorize(mask, num_classes)
    if style == "mask":
        return Image.fromarray(colours)
    if style == "outline":
        return Image.fromarray(_paste(rgb, colours, outline(mask)))
    return Image.fromarray(_paste(rgb, _blend(rgb, colours, float(alpha)), mask > 0))


def _blend(rgb: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * rgb + alpha * colours``, rounded, as uint8 (every pixel)."""
    alpha = min(max(alpha, 0.0), 1.0)
    if cv2 is not None:
        return cv2.addWeighted(rgb, 1.0 - alpha, colours, alpha, 0.0)
    # 8-bit fixed point: weights in 1/256 steps, +128 rounds; the weight's own rounding adds < 0.5 level.
    weight = int(round(alpha * 256))
    mixed = rgb.astype(np.uint16) * (256 - weight) + colours.astype(np.uint16) * weight + 128
    return (mixed >> 8).astype(np.uint8)


def _paste(rgb: np.ndarray, drawn: np.ndarray, where: np.ndarray) -> np.ndarray:
    """A copy of ``rgb`` with ``drawn`` where ``where`` is true."""
    if cv2 is None:
        return np.where(where[..., None], drawn, rgb)  # several times faster than boolean indexing
    out = rgb.copy()
    cv2.copyTo(drawn, where.view(np.uint8), out)
    return out


def class_shares(mask: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Fraction of pixels of each class (for legends)."""
    counts = np.bincount(mask.ravel(), minlength=len(classes))[: len(classes)]
    return {name: float(c) / mask.size for name, c in zip(classes, counts)}


def legend_rows(mask: np.ndarray, classes: list[str], *, include_absent: bool = False) -> list[dict]:
    """One entry per class (colour, name, share of pixels), largest share first."""
    colours = colour_hex(len(classes))
    shares = class_shares(mask, classes)
    rows = [{"colour": colours[i], "name": name, "share": shares[name]} for i, name in enumerate(classes)]
    rows = [r for r in rows if include_absent or r["share"] > 0]
    return sorted(rows, key=lambda r: -r["share"])


def legend_html(rows: list[dict]) -> str:
    """The legend as small HTML: a colour swatch, the class name and its share of the image."""
    items = []
    for r in rows:
        swatch = (f'<span style="display:inline-block;width:0.9em;height:0.9em;border:1px solid #888;'
                  f'background:{r["colour"]};margin-right:0.35em;vertical-align:middle"></span>')
        items.append(f'<div style="white-space:nowrap">{swatch}{html.escape(r["name"])} '
                     f'<span style="opacity:0.7">{100 * r["share"]:.1f}%</span></div>')
    return "".join(items)


# ----------------------------------------------------------------------------- Plotly figures

PAPER_SERIES = "paper, A100 GPU (not measured here)"
PARETO_SERIES = "Pareto front (trained models, measured)"
_SPEED_AXES = {
    "fps": ("fps", "Throughput (FPS, batch 1; higher is better)", True),
    "latency": ("latency_p50_ms", "Latency p50 (ms, batch 1; lower is better)", False),
}


def row_label(row: dict) -> str:
    """A results row's name in charts: model, runtime when not torch, input size; untrained flagged."""
    from .zoo import UNTRAINED

    runtime = row.get("runtime") or "torch"
    name = f"{row['model']} ({'' if runtime == 'torch' else runtime + ', '}{row.get('size', '?')} px)"
    return name if row.get("trained", True) else f"{name} - {UNTRAINED}"


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
        f"mIoU {fmt('miou', '.3f')} on {html.escape(str(row.get('dataset') or 'no data'))}"
        f" ({row.get('num_images', 0) or 0} images)",
        f"params {fmt('params', ',d')}, {fmt('gflops', '.2f')} GFLOPs, file {fmt('size_mb', '.1f', ' MB')}",
        html.escape(str(row.get("cpu") or "")),
    ])


def speed_accuracy_figure(rows: list[dict], *, speed: str = "fps", reference: list[dict] | None = None) -> go.Figure:
    """mIoU against FPS (``speed="fps"``) or p50 latency (``"latency"``), one point per measured row,
    the Pareto front of the measured *trained* models as a line, and optional published ``reference`` points
    (dicts with model, fps or latency_p50_ms, miou, hardware) as a separate series."""
    if speed not in _SPEED_AXES:
        raise ValueError(f"speed must be one of {list(_SPEED_AXES)}, not {speed!r}")
    key, axis_title, higher_better = _SPEED_AXES[speed]
    measured = [r for r in rows if r.get("miou") is not None and r.get(key) is not None]
    fig = go.Figure()
    for trained, name, symbol in ((True, "measured here", "circle"),
                                  (False, "measured here - untrained (random weights)", "x")):
        part = [r for r in measured if bool(r.get("trained", True)) == trained]
        if part:
            fig.add_trace(go.Scatter(
                x=[r[key] for r in part], y=[r["miou"] for r in part], mode="markers+text", name=name,
                text=[r["model"] for r in part], textposition="top center", cliponaxis=False,
                marker={"size": 11, "symbol": symbol}, hovertext=[_hover(r) for r in part], hoverinfo="text"))
    # Untrained models are no trade-off anyone would make (fast, but their mIoU is chance): the
    # front runs through trained models only, or an untrained one at 200 FPS would anchor it.
    trained = [r for r in measured if bool(r.get("trained", True))]
    front = pareto_front([r[key] for r in trained], [r["miou"] for r in trained], maximize_x=higher_better)
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[trained[i][key] for i in front], y=[trained[i]["miou"] for i in front],
                                 mode="lines", name=PARETO_SERIES, hoverinfo="skip",
                                 line={"dash": "dash", "color": "#636363"}))
    ref = [p for p in (reference or []) if p.get(key) is not None and p.get("miou") is not None]
    if ref:
        fig.add_trace(go.Scatter(
            x=[p[key] for p in ref], y=[p["miou"] for p in ref], mode="markers+text", name=PAPER_SERIES,
            text=[p["model"] for p in ref], textposition="bottom center", cliponaxis=False,
            marker={"size": 11, "symbol": "diamond-open", "color": "#7f7f7f"},
            hovertext=[f"<b>{html.escape(p['model'])}</b><br>{html.escape(p.get('hardware', ''))} (published)"
                       f"<br>mIoU {p['miou']:.3f}" for p in ref], hoverinfo="text"))
    xs = [r[key] for r in measured] + [p[key] for p in ref]
    log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20
    fig.update_layout(title="Speed vs accuracy", xaxis_title=axis_title, yaxis_title="mIoU",
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 60, "l": 90, "r": 90})
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
        samples = r.get("latency_samples_ms") or []
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

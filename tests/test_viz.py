"""Pure figure and picture functions of garbseg.present (overlays, charts), and the HTML report built from them."""

from __future__ import annotations

import re

import numpy as np
import pytest

from PIL import Image

import garbseg.present.overlays as viz
from garbseg.present.charts import (IMAGENET_SERIES, NO_IMAGENET_SERIES, PAPER_SERIES, PARETO_SERIES,
                                    confusion_matrix_figure, frame_latency_figure, latency_distribution_figure,
                                    pareto_front, per_class_iou_figure, row_label, speed_accuracy_figure)
from garbseg.present.overlays import colour_hex, legend_html, legend_rows, outline, overlay, palette
from garbseg.present.report import build_report, results_table, standard_figures
from garbseg.models.zoo import UNTRAINED

CLASSES = ["background", "glass", "metal"]


def make_row(model, fps, miou, *, trained=True, size=224, per_class=None):
    latency = 1000.0 / fps
    return {
        "model": model, "runtime": "torch", "size": size, "threads": 2, "trained": trained, "params": 1000,
        "gflops": 1.5, "size_mb": 4.0, "latency_p50_ms": latency, "latency_p95_ms": latency * 1.2, "fps": fps,
        "latency_samples_ms": [latency * f for f in (0.9, 1.0, 1.1, 1.3)], "miou": miou,
        "per_class_iou": per_class or {"background": 0.9, "glass": None, "metal": miou},
        "precision": 0.8, "recall": 0.7, "pixel_accuracy": 0.7, "num_images": 3, "dataset": "set/val",
        "confusion_matrix": [[8, 1, 1], [0, 0, 0], [2, 0, 6]], "cpu": "test cpu",
    }


# ----------------------------------------------------------------------------- Pareto front


def test_pareto_front_keeps_exactly_the_non_dominated_points():
    # (fps, miou): C is beaten by B on both; E ties D on fps but is worse on mIoU.
    xs = [10, 5, 4, 1, 1]
    ys = [0.3, 0.5, 0.45, 0.7, 0.6]
    assert pareto_front(xs, ys) == [3, 1, 0]  # ordered along x: D (1), B (5), A (10)


def test_pareto_front_minimising_x_for_latency():
    latency = [100, 200, 50, 300]
    miou = [0.5, 0.6, 0.4, 0.55]
    # Lower latency is better: 50/0.4, 100/0.5, 200/0.6 all survive; 300/0.55 is beaten by 200/0.6.
    assert pareto_front(latency, miou, maximize_x=False) == [2, 0, 1]


def test_pareto_front_ignores_missing_values_and_keeps_duplicates():
    assert pareto_front([1, None, 3, 3], [0.5, 0.9, float("nan"), 0.2]) == [0, 3]
    assert pareto_front([2, 2], [0.5, 0.5]) == [0, 1]  # equal points do not dominate each other
    assert pareto_front([], []) == []


# ----------------------------------------------------------------------------- overlay

NUM_CLASSES = 6


@pytest.fixture(params=["opencv", "numpy"])
def blend_path(request, monkeypatch):
    """Run a test once on the OpenCV path and once on the numpy fallback (cv2 hidden)."""
    if request.param == "opencv" and viz.cv2 is None:
        pytest.skip("OpenCV is not installed")
    if request.param == "numpy":
        monkeypatch.setattr(viz, "cv2", None)
    return request.param


def photo_and_mask(height=97, width=131, seed=1):
    """A noisy photo and a mask with background, every class, and a few ignore (255) pixels."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = rng.integers(0, NUM_CLASSES, (height, width)).astype(np.uint8)
    mask[:20] = 0
    mask[-3:, -5:] = 255
    return rgb, mask


def expected_colours(mask):
    table = np.vstack([palette(NUM_CLASSES), np.full((256 - NUM_CLASSES, 3), 255, np.uint8)])
    return table[mask]


@pytest.mark.parametrize("alpha", [0.0, 0.2, 1 / 3, 0.5, 0.7, 0.9, 1.0])
def test_overlay_is_within_one_grey_level_of_the_float_blend(blend_path, alpha):
    rgb, mask = photo_and_mask()
    out = np.asarray(overlay(Image.fromarray(rgb), mask, NUM_CLASSES, alpha=alpha))
    drawn = mask > 0
    float_blend = ((1 - alpha) * rgb.astype(np.float64) + alpha * expected_colours(mask).astype(np.float64)).round()
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert np.array_equal(out[~drawn], rgb[~drawn])  # background keeps the photo exactly
    assert np.abs(out[drawn].astype(int) - float_blend[drawn]).max() <= 1
    if alpha == 1.0:  # full opacity: the class colours themselves (ignore pixels white)
        assert np.array_equal(out[drawn], expected_colours(mask)[drawn])


def test_overlay_mask_and_outline_styles(blend_path):
    rgb, mask = photo_and_mask(40, 50, seed=2)
    image = Image.fromarray(rgb)
    coloured = np.asarray(overlay(image, mask, NUM_CLASSES, style="mask"))
    assert np.array_equal(coloured, expected_colours(mask))
    edges = outline(mask)
    assert 0 < edges.sum() < edges.size
    lined = np.asarray(overlay(image, mask, NUM_CLASSES, style="outline", alpha=0.1))  # alpha does not apply
    assert np.array_equal(lined[edges], expected_colours(mask)[edges])
    assert np.array_equal(lined[~edges], rgb[~edges])
    with pytest.raises(ValueError, match="style"):
        overlay(image, mask, NUM_CLASSES, style="blur")
    with pytest.raises(ValueError, match="mask is"):
        overlay(image, mask[:-1], NUM_CLASSES)


def test_overlay_of_a_greyscale_photo_and_a_wide_mask_dtype(blend_path):
    rgb, mask = photo_and_mask(30, 30, seed=3)
    grey = Image.fromarray(rgb[..., 0], mode="L")
    out = np.asarray(overlay(grey, mask.astype(np.int64), NUM_CLASSES))
    assert out.shape == (30, 30, 3)
    background = mask == 0
    assert np.array_equal(out[background], np.repeat(rgb[..., :1], 3, axis=2)[background])


# ----------------------------------------------------------------------------- legend


def test_legend_rows_give_colour_name_and_share_largest_first():
    mask = np.zeros((10, 10), np.uint8)
    mask[:, :3] = 2  # 30% metal
    mask[0, 9] = 1  # 1% glass
    rows = legend_rows(mask, CLASSES)
    assert [r["name"] for r in rows] == ["background", "metal", "glass"]
    assert rows[1]["share"] == pytest.approx(0.30)
    assert rows[1]["colour"] == colour_hex(3)[2]
    assert "metal" in legend_html(rows) and "30.0%" in legend_html(rows)
    absent = legend_rows(np.zeros((4, 4), np.uint8), CLASSES)
    assert [r["name"] for r in absent] == ["background"]


def test_legend_html_escapes_class_names():
    rows = [{"colour": "#000000", "name": "<b>x</b>", "share": 1.0}]
    assert "<b>x</b>" not in legend_html(rows) and "&lt;b&gt;" in legend_html(rows)


# ----------------------------------------------------------------------------- figures


def test_speed_accuracy_figure_has_measured_untrained_front_and_reference_series():
    rows = [make_row("fast", 40, 0.3), make_row("slow", 5, 0.6), make_row("bad", 4, 0.2),
            make_row("random", 60, 0.01, trained=False), {**make_row("no-data", 50, 0.0), "miou": None}]
    reference = [{"model": "paper-model", "fps": 300.0, "miou": 0.7, "hardware": "A100"}]
    fig = speed_accuracy_figure(rows, speed="fps", reference=reference)
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"measured here", f"measured here - {UNTRAINED}", PARETO_SERIES, PAPER_SERIES}
    # the row without mIoU is left out; every label carries its input size
    assert list(traces["measured here"].text) == ["fast 224px", "slow 224px", "bad 224px"]
    # Front over measured trained points only (the paper point must not hide measured ones, the untrained
    # "random" at 60 FPS is no trade-off); "bad" is dominated.
    assert list(traces[PARETO_SERIES].x) == [5, 40]
    assert "A100" in traces[PAPER_SERIES].hovertext[0]
    assert fig.layout.xaxis.type == "log"  # 4 .. 300 FPS spans far more than one decade


def test_speed_accuracy_figure_tells_imagenet_started_backbones_apart():
    rows = [{**make_row("imagenet-fast", 40, 0.70), "imagenet_backbone": True},
            {**make_row("scratch-slow", 5, 0.75), "imagenet_backbone": False},
            {**make_row("scratch-bad", 30, 0.40), "imagenet_backbone": False},
            {**make_row("random", 60, 0.01, trained=False), "imagenet_backbone": None}]
    fig = speed_accuracy_figure(rows, speed="fps")
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {IMAGENET_SERIES, NO_IMAGENET_SERIES, f"measured here - {UNTRAINED}", PARETO_SERIES}
    assert list(traces[IMAGENET_SERIES].text) == ["imagenet-fast 224px"]
    assert list(traces[NO_IMAGENET_SERIES].text) == ["scratch-slow 224px", "scratch-bad 224px"]
    assert traces[IMAGENET_SERIES].marker.symbol != traces[NO_IMAGENET_SERIES].marker.symbol
    # One front over every trained model, whatever its start.
    assert list(traces[PARETO_SERIES].x) == [5, 40]


def test_speed_accuracy_figure_draws_intervals_and_notes_overlaps_on_the_front():
    fast = {**make_row("fast", 40, 0.50), "miou_ci95": [0.42, 0.58]}
    slow = {**make_row("slow", 5, 0.60), "miou_ci95": [0.55, 0.66]}  # overlaps fast's interval
    fig = speed_accuracy_figure([fast, slow], speed="fps")
    measured = next(t for t in fig.data if t.name == "measured here")
    assert list(measured.error_y.array) == pytest.approx([0.08, 0.06])
    assert list(measured.error_y.arrayminus) == pytest.approx([0.08, 0.05])
    note = " ".join(a.text for a in fig.layout.annotations)
    assert "fast" in note and "slow" in note and "overlap" in note
    apart = {**slow, "miou_ci95": [0.59, 0.66]}
    assert not speed_accuracy_figure([fast, apart], speed="fps").layout.annotations


@pytest.mark.parametrize("speed", ["fps", "latency"])
def test_pareto_front_leaves_untrained_models_out(speed):
    rows = [make_row("trained-a", 20, 0.60), make_row("trained-b", 50, 0.45), make_row("trained-c", 10, 0.40),
            make_row("random", 200, 0.01, trained=False), make_row("random-good", 5, 0.99, trained=False)]
    fig = speed_accuracy_figure(rows, speed=speed)
    front = next(t for t in fig.data if t.name == PARETO_SERIES)
    key = "fps" if speed == "fps" else "latency_p50_ms"
    on_front = {r["model"] for r in rows if r[key] in list(front.x)}
    assert on_front == {"trained-a", "trained-b"}  # without the filter "random" (200 FPS) would be on it
    untrained = next(t for t in fig.data if t.name == f"measured here - {UNTRAINED}")
    assert list(untrained.text) == ["random 224px", "random-good 224px"]  # still drawn, just not on the front
    only_untrained = speed_accuracy_figure([make_row("r1", 200, 0.01, trained=False),
                                            make_row("r2", 100, 0.02, trained=False)], speed=speed)
    assert PARETO_SERIES not in {t.name for t in only_untrained.data}


def test_speed_accuracy_latency_axis_and_no_reference():
    rows = [make_row("a", 10, 0.5), make_row("b", 20, 0.4)]
    fig = speed_accuracy_figure(rows, speed="latency")
    assert "Latency" in fig.layout.xaxis.title.text
    measured = next(t for t in fig.data if t.name == "measured here")
    assert list(measured.x) == pytest.approx([100.0, 50.0])
    assert PAPER_SERIES not in {t.name for t in fig.data}
    assert "<b>a (224 px)</b>" in measured.hovertext[0] and "0.500" in measured.hovertext[0]
    with pytest.raises(ValueError):
        speed_accuracy_figure(rows, speed="speed")


def test_per_class_iou_heatmap_blanks_undefined_classes():
    rows = [make_row("a", 10, 0.5), make_row("b", 20, 0.4, trained=False)]
    fig = per_class_iou_figure(rows)
    heat = fig.data[0]
    assert list(heat.x) == CLASSES
    assert list(heat.y) == [row_label(rows[0]), row_label(rows[1])]
    assert UNTRAINED in heat.y[1]
    assert np.isnan(heat.z[0][1]) and heat.z[1][2] == pytest.approx(0.4)


def test_confusion_matrix_figure_normalises_rows_and_keeps_counts():
    fig = confusion_matrix_figure([[8, 1, 1], [0, 0, 0], [2, 0, 6]], CLASSES)
    heat = fig.data[0]
    assert heat.z[0] == pytest.approx([0.8, 0.1, 0.1])
    assert np.isnan(heat.z[1]).all()  # a class with no true pixels has no row share
    assert heat.customdata[2][0] == 2
    assert heat.text[2][2] == "75%"


def test_latency_distribution_shows_every_measured_row():
    rows = [make_row("a", 10, 0.5), {**make_row("b", 20, 0.4), "latency_samples_ms": []},
            {**make_row("c", 20, 0.4), "latency_samples_ms": [], "latency_p50_ms": None, "latency_p95_ms": None}]
    box = latency_distribution_figure(rows)
    assert [t.type for t in box.data] == ["box", "box"] and list(box.data[0].y) == rows[0]["latency_samples_ms"]
    # a row kept without its samples still shows its median and p95; one with no timing at all cannot
    assert list(box.data[1].y) == [rows[1]["latency_p50_ms"], rows[1]["latency_p95_ms"]]
    assert latency_distribution_figure(rows, kind="violin").data[0].type == "violin"


def test_frame_latency_figure_plots_latency_and_rolling_fps():
    fig = frame_latency_figure([100.0] * 12 + [50.0] * 10, window=10)
    latency, fps = fig.data
    assert len(latency.y) == len(fps.y) == 22
    assert fps.y[0] == pytest.approx(10.0) and fps.y[-1] == pytest.approx(20.0)
    assert fps.y[16] == pytest.approx(1000 / ((5 * 100 + 5 * 50) / 10))  # frames 8..17: half slow, half fast
    assert fps.yaxis == "y2"


# ----------------------------------------------------------------------------- report


def test_html_report_is_self_contained_and_holds_every_chart():
    rows = [make_row("alpha-model", 10, 0.5), make_row("beta-model", 20, 0.4, trained=False)]
    figures = standard_figures(rows)
    titles = [t for t, _ in figures]
    assert titles[:4] == ["Speed vs accuracy (FPS)", "Speed vs accuracy (latency)", "IoU per class",
                          "Latency distribution"]
    assert sum(t.startswith("Confusion matrix") for t in titles) == 2
    page = build_report(rows, figures, title="Test <report>")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "Test &lt;report&gt;" in page
    assert not re.search(r"<script[^>]+src=[\"']https?:", page), "must not load scripts from the network"
    assert page.count("Plotly.newPlot") == len(figures)
    assert len(page) > 1_000_000  # plotly.js itself is embedded once...
    assert page.count("plotly.js v") < 3  # ...not once per figure
    assert "alpha-model" in page and "test cpu" in page


def test_results_table_rounds_for_reading():
    table = results_table([make_row("a", 3.0, 0.123456)])
    assert table.loc[0, "miou"] == pytest.approx(0.123)
    assert table.loc[0, "latency_p50_ms"] == pytest.approx(333.3)
    assert "latency_samples_ms" not in table.columns

"""Benchmark: latency, FPS and mIoU of chosen models on this machine; charts, table and downloads."""

import streamlit as st

from garbseg.app import ui
from garbseg.bench.suite import open_eval_set, run_suite
from garbseg.inference.runtimes import RUNTIMES
from garbseg.models import list_models
from garbseg.present.reference import PAPER_TABLE1
from garbseg.present.report import build_report, results_table, standard_figures
from garbseg.bench.results import export_bytes, merge_rows
from garbseg.present.charts import (confusion_matrix_figure, latency_distribution_figure, per_class_iou_figure, row_label,
                         speed_accuracy_figure)
from garbseg.models.zoo import default_selection

settings = ui.page_setup("Benchmark")
st.title("Benchmark")
st.caption("Batch 1, warm-up runs first, then timed runs: median (p50) and 95th percentile latency. "
           "On a shared CPU absolute times drift; compare models measured in the same run.")

with st.form("bench"):
    names = st.multiselect("Models", list_models(), default=default_selection(), format_func=ui.label,
                           key="bench_models")
    c1, c2, c3, c4 = st.columns(4)
    size = c1.selectbox("Input size (px)", [224, 320, 512], index=0, key="bench_size")
    threads = c2.number_input("Threads", 1, 64, settings.threads, key="bench_threads")
    runs = c3.number_input("Timed runs", 3, 500, 10, key="bench_runs")
    warmup = c4.number_input("Warm-up runs", 0, 50, 3, key="bench_warmup")
    runtimes = st.multiselect("Runtimes", RUNTIMES, default=["torch"], key="bench_runtimes",
                              help="The int8 runtimes calibrate on first use (minutes per trained model, cached); "
                                   "auto here, as on the Segment and Stream pages, considers int8 only once "
                                   "calibrated.")
    source = st.radio("Labelled set (for mIoU)", ["configured folder", "uploaded zip", "none (speed only)"],
                      horizontal=True, key="bench_source")
    c1, c2, c3 = st.columns([2, 1, 1])
    archive = c1.file_uploader("Zipped labelled set (YOLOv8-seg, image+mask or COCO; any folder depth)",
                               type=["zip"], key="bench_zip")
    split = c2.text_input("Split", "", placeholder="auto", help="e.g. val, test, train. Empty: val (or valid, "
                          "test) when present, else the first split; ignored for a single-split folder",
                          key="bench_split")
    max_images = c3.number_input("Max images", 1, 100_000, 10, help="Evaluate on the first N images only",
                                 key="bench_max_images")
    start = st.form_submit_button("Run benchmark", type="primary")

if start:
    dataset, ok = None, True
    try:
        if source == "configured folder":
            dataset = open_eval_set(settings.data_dir, split.strip() or None, int(max_images))
        elif source == "uploaded zip":
            if archive is None:
                raise ValueError("choose a zip file first, or pick another labelled set")
            folder = ui.extract_zip(archive.getvalue())
            dataset = open_eval_set(folder, split.strip() or None, int(max_images))
    except Exception as exc:  # unreadable folder or zip: say so, keep the page alive
        ui.show_error(f"Cannot open the labelled set: {exc}")
        ok = False
    if ok and not names:
        ui.show_error("Choose at least one model.")
        ok = False
    if ok:
        bar = st.progress(0.0, text="starting")
        classes = dataset.classes if dataset is not None else ui.classes_for_untrained(settings)
        outcome = run_suite(names, lambda name: ui.get_model(name, classes), size=int(size), threads=int(threads),
                            warmup=int(warmup), runs=int(runs), dataset=dataset, runtimes=runtimes or ["torch"],
                            progress=lambda f, text: bar.progress(min(1.0, f), text=text))
        bar.empty()
        for problem in outcome.problems:
            st.warning(problem)
        if outcome.rows:
            ui.set_bench_rows(merge_rows(ui.bench_rows(), outcome.rows))
            st.success(f"Measured {len(outcome.rows)} result row(s)"
                       + (f" on {len(dataset)} images of {dataset.name}." if dataset is not None else "."))

rows = ui.bench_rows()
if not rows:
    st.info("No results yet: choose models and press *Run benchmark*.")
    st.stop()

st.subheader("Results")
st.dataframe(results_table(rows), hide_index=True)

evaluated = [r for r in rows if r.get("miou") is not None]
if evaluated:
    axis = st.radio("Speed axis", ["fps", "latency", "memory", "disk"], horizontal=True,
                    format_func={"fps": "FPS", "latency": "latency (p50)", "memory": "peak memory",
                                 "disk": "disk"}.get, key="bench_axis")
    st.plotly_chart(speed_accuracy_figure(rows, speed=axis, reference=list(PAPER_TABLE1)), key="scatter")
    if not PAPER_TABLE1:
        st.caption("The seed paper's Table 1 (A100 GPU) is not drawn: its exact numbers are not recorded in "
                   "garbseg.present.reference yet.")
    st.plotly_chart(per_class_iou_figure(rows), key="iou_heatmap")
    with_matrix = [r for r in evaluated if r.get("confusion_matrix")]
    if with_matrix:
        chosen = st.selectbox("Confusion matrix of", range(len(with_matrix)), key="bench_confusion_row",
                              format_func=lambda i: row_label(with_matrix[i]))
        row = with_matrix[chosen]
        st.plotly_chart(confusion_matrix_figure(row["confusion_matrix"], list(row["per_class_iou"]),
                                                title=f"Confusion matrix - {row_label(row)}"), key="confusion")
else:
    st.info("These results have no accuracy: run with a labelled set to get mIoU and the speed/accuracy chart.")

kind = st.radio("Latency chart", ["box", "violin"], horizontal=True, key="bench_latency_kind")
st.plotly_chart(latency_distribution_figure(rows, kind=kind), key="latency_dist")

st.subheader("Downloads")
c1, c2, c3, c4 = st.columns(4)
c1.download_button("CSV", lambda: export_bytes(rows, ".csv"), "bench_results.csv", "text/csv", on_click="ignore")
c2.download_button("JSON", lambda: export_bytes(rows, ".json"), "bench_results.json", "application/json",
                   on_click="ignore")
c3.download_button("HTML report", lambda: build_report(rows, standard_figures(rows, list(PAPER_TABLE1))),
                   "bench_report.html", "text/html", on_click="ignore")
if c4.button("Clear results"):
    ui.set_bench_rows([])
    st.rerun()

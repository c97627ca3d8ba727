"""Benchmark: latency, FPS and mIoU (with 95% intervals) of chosen models on this machine, the paper's
published numbers beside ours, each model's worst photos; charts, table and downloads."""

from dataclasses import replace

import streamlit as st

from garbseg.app import ui
from garbseg.bench.results import export_bytes
from garbseg.bench.suite import evidence, open_eval_set, run_suite
from garbseg.inference.runtimes import RUNTIMES
from garbseg.models import list_models
from garbseg.models.zoo import default_selection
from garbseg.present.charts import (confusion_matrix_figure, latency_distribution_figure, per_class_iou_figure,
                                    row_label, speed_accuracy_figure)
from garbseg.present.reference import NOT_LIKE_FOR_LIKE, PAPER_TABLE1, paper_comparison
from garbseg.present.report import build_report, results_table, standard_figures
from garbseg.present.review import disagreements, review_photo, worst_images

SIZES = ["model default", 224, 320, 384, 512]

settings = ui.page_setup("Benchmark")
st.title("Benchmark")
st.caption("Batch 1, warm-up runs first, then timed runs: median (p50) and 95th percentile latency. "
           "mIoU comes from one confusion matrix over all evaluated photos; its 95% interval from 1,000 "
           "bootstrap resamples of those photos. On a shared CPU absolute times drift; compare models "
           "measured in the same run.")

with st.form("bench"):
    names = st.multiselect("Models", list_models(), default=default_selection(), format_func=ui.label,
                           key="bench_models")
    c1, c2, c3, c4 = st.columns(4)
    size_choice = c1.selectbox("Input size (px)", SIZES, key="bench_size",
                               help="model default: each model at the input size it was trained at (from its "
                                    "checkpoint); a number: every model at that size.")
    threads = c2.number_input("Threads", 1, 64, settings.threads, key="bench_threads")
    runs = c3.number_input("Timed runs", 3, 500, 10, key="bench_runs")
    warmup = c4.number_input("Warm-up runs", 0, 50, 3, key="bench_warmup")
    runtimes = st.multiselect("Runtimes", RUNTIMES, default=["torch", "auto"], key="bench_runtimes",
                              help="torch: eager PyTorch, the reference. auto: what the Segment and Stream pages "
                                   "run, the fastest runtime that agrees with torch here. Here, as there, auto "
                                   "considers an int8 runtime only once it is calibrated (bench --runtime auto "
                                   "or predict --calibrate), so its figure is what a user of the app gets.")
    source = st.radio("Labelled set (for mIoU)", ["configured folder", "uploaded zip", "none (speed only)"],
                      horizontal=True, key="bench_source")
    c1, c2, c3 = st.columns([2, 1, 1])
    archive = c1.file_uploader("Zipped labelled set (YOLOv8-seg, image+mask or COCO; any folder depth)",
                               type=["zip"], key="bench_zip")
    split = c2.text_input("Split", "", placeholder="auto", help="e.g. val, test, train. Empty: val (or valid, "
                          "test) when present, else the first split; ignored for a single-split folder",
                          key="bench_split")
    max_images = c3.number_input("Photos (0 = whole split)", 0, 100_000, 0, key="bench_max_images",
                                 help="0 evaluates every photo of the split. N: a class-stratified sample of "
                                      "about N photos (every class of the split appears in it), seeded.")
    start = st.form_submit_button("Run benchmark", type="primary")

if start:
    dataset, ok, location = None, True, None
    try:
        if source == "configured folder":
            location = (settings.data_dir, split.strip() or None)
        elif source == "uploaded zip":
            if archive is None:
                raise ValueError("choose a zip file first, or pick another labelled set")
            location = (ui.extract_zip(archive.getvalue(), archive.name), split.strip() or None)
        if location:
            dataset = open_eval_set(*location, int(max_images) or None)
    except Exception as exc:  # unreadable folder or zip: say so, keep the page alive
        ui.show_error(f"Cannot open the labelled set: {exc}")
        ok = False
    if ok and not names:
        ui.show_error("Choose at least one model.")
        ok = False
    if ok:
        bar = st.progress(0.0, text="starting")
        classes = dataset.classes if dataset is not None else ui.classes_for_untrained(settings)
        size = None if size_choice == "model default" else int(size_choice)
        with ui.InferenceSection(int(threads)):  # no other session's inference shares the cores meanwhile
            outcome = run_suite(names, lambda name: ui.get_model(name, classes), size=size, threads=int(threads),
                                warmup=int(warmup), runs=int(runs), dataset=dataset,
                                runtimes=runtimes or ["torch"],
                                progress=lambda f, text: bar.progress(min(1.0, f), text=text))
        bar.empty()
        for problem in outcome.problems:
            st.warning(problem)
        if outcome.rows:
            ui.add_bench_rows(outcome.rows)
            if location:
                st.session_state["bench_eval_location"] = location
            st.success(f"Measured {len(outcome.rows)} result row(s)"
                       + (f" on {len(dataset)} photos of {dataset.name}." if dataset is not None else "."))

shared = st.toggle("Show everyone's results", key="bench_shared",
                   help="Off: only the runs of this browser session. On: the shared history of every session.")
rows = ui.bench_rows(shared=shared)
if not rows:
    st.info("No results yet: choose models and press *Run benchmark*.")
    st.stop()

for name, basis in evidence(rows).items():
    st.caption(f"Accuracy on **{name}** rests on {basis['images']} photos whose labels contain "
               f"{len(basis['classes'])} classes: {', '.join(basis['classes'])}.")

st.subheader("Results")
st.dataframe(results_table(rows), hide_index=True)

evaluated = [r for r in rows if r.get("miou") is not None]
if evaluated:
    axis = st.radio("Speed axis", ["fps", "latency", "memory", "disk"], horizontal=True,
                    format_func={"fps": "FPS", "latency": "latency (p50)", "memory": "peak memory",
                                 "disk": "disk"}.get, key="bench_axis")
    st.plotly_chart(speed_accuracy_figure(rows, speed=axis, reference=list(PAPER_TABLE1)), key="scatter")
    st.caption("Error bars: 95% bootstrap intervals of mIoU. Filled circles: backbones that began from their "
               "ImageNet weights; open circles: backbones without them (none exist on this machine for "
               "MobileNetV3-Large and ResNet50), so their mIoU says more about the start than the "
               "architecture. Grey diamonds: the paper's Table 1 as published (NVIDIA A100 GPU, ImageNet "
               "starts), not measured here.")

    st.subheader("The paper beside us")
    st.dataframe(paper_comparison(rows), hide_index=True)
    st.markdown("Not like for like:\n" + "\n".join(f"- **{aspect}**: {why}" for aspect, why in NOT_LIKE_FOR_LIKE))

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

reviewable = [r for r in evaluated if r.get("per_image")]
location = st.session_state.get("bench_eval_location")
samples = []  # overlays shown below, also put in the HTML report
if reviewable:
    st.subheader("Where models fail")
    if location is None:
        st.info("Run a benchmark with a labelled set in this session to see its photos.")
    else:
        review_set = open_eval_set(*location)
        pick = st.selectbox("Worst photos of", range(len(reviewable)), key="bench_worst_row",
                            format_func=lambda i: row_label(reviewable[i]))
        row = reviewable[pick]
        # The runtime that produced the row's scores, at its size: the photos shown are the ones it scored.
        ran = replace(settings, runtime=row.get("resolved_runtime") or "torch")
        predictor = ui.get_predictor(row["model"], review_set.classes, ran, row.get("size"))
        for entry in worst_images(row["per_image"], 3):
            try:
                shown = review_photo(predictor, review_set, entry["image"])
            except KeyError:
                continue  # a photo of another split or upload than the one opened now
            labels = ", ".join(entry["truth_classes"]) or "none (background only)"
            st.markdown(f"`{entry['image']}`: mIoU {entry['miou']:.3f}, labels: {labels}"
                        if entry["miou"] is not None else f"`{entry['image']}`: no score")
            samples.append((f"{row_label(row)}: {entry['image']}", shown.prediction_picture()))
            cols = st.columns(4)
            cols[0].image(shown.photo, caption="photo", width="stretch")
            cols[1].image(shown.truth_picture(), caption="truth", width="stretch")
            cols[2].image(shown.prediction_picture(), caption="prediction", width="stretch")
            cols[3].image(shown.error_picture(), caption="error map: green right, red wrong, grey ignored",
                          width="stretch")
        if len(reviewable) > 1:
            c1, c2 = st.columns(2)
            a = c1.selectbox("Compare", range(len(reviewable)), key="bench_cmp_a",
                             format_func=lambda i: row_label(reviewable[i]))
            b = c2.selectbox("with", range(len(reviewable)), index=1, key="bench_cmp_b",
                             format_func=lambda i: row_label(reviewable[i]))
            gaps = disagreements(reviewable[a]["per_image"], reviewable[b]["per_image"], 5)
            st.caption("Photos where the two models' mIoU differ most:")
            st.dataframe([{"photo": g["image"], row_label(reviewable[a]): g["miou_a"],
                           row_label(reviewable[b]): g["miou_b"], "gap": g["gap"]} for g in gaps], hide_index=True)

st.subheader("Downloads")
c1, c2, c3, c4 = st.columns(4)
c1.download_button("CSV", lambda: export_bytes(rows, ".csv"), "bench_results.csv", "text/csv", on_click="ignore")
c2.download_button("JSON", lambda: export_bytes(rows, ".json"), "bench_results.json", "application/json",
                   on_click="ignore")
c3.download_button("HTML report", lambda: build_report(rows, standard_figures(rows, list(PAPER_TABLE1)),
                                                     samples=samples),
                   "bench_report.html", "text/html", on_click="ignore")
everyone = shared and c4.checkbox("everyone's", key="bench_clear_everyone",
                                  help="Clear removes every session's results, not only yours")
if c4.button("Clear results", help="Removes the results of this session (or everyone's, when ticked)"):
    ui.clear_bench_rows(everyone=everyone)
    st.rerun()

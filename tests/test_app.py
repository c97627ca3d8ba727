"""Every page of the Streamlit app, driven headless with streamlit.testing.v1.AppTest.

Checkpoints and the results cache point at temp folders, so the tests neither depend on nor touch
what the training job writes into checkpoints/; one fixture ships a tiny checkpoint to cover the
"with weights" paths too.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pytest

from garbseg.app import ui
from streamlit.testing.v1 import AppTest

from conftest import REAL_DATA, make_yolo_set, requires_real_data, zip_folder
from garbseg.bench.results import ResultsStore
from garbseg.models import DEFAULT_CLASSES, UNTRAINED, make_metadata, random_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FAST = "mobilenet_v3_large-lraspp"  # the default pick: smallest and fastest
OTHER = "mobilenet_v2-lraspp"
TIMEOUT = 240


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> Path:
    """A checkpoint folder where only FAST ships, with metadata like the training job writes."""
    folder = tmp_path_factory.mktemp("checkpoints")
    loaded = random_model(FAST, DEFAULT_CLASSES)
    meta = make_metadata(loaded.model, classes=DEFAULT_CLASSES, input_size=224, model_kwargs={"output_stride": 16},
                         trained=True, recipe={"epochs": 3, "lr": 0.001, "batch_size": 8},
                         data={"name": "garbage-seg/train", "train_images": 349},
                         metrics={"miou": 0.4321, "pixel_accuracy": 0.8, "precision": 0.7, "recall": 0.8,
                                  "num_images": 60, "per_class_iou": {c: 0.4 for c in DEFAULT_CLASSES}},
                         epoch=3, train_seconds=12.5)
    save_checkpoint(folder / f"{FAST}.safetensors", loaded.model, meta)
    return folder


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No shipped checkpoints and a private results cache, unless a test asks for weights.

    Pages run on eager torch here: the app's default, auto, prepares and times every runtime on first
    use of a model (tens of seconds per model in a fresh cache); test_segment_on_the_sidebar_runtime
    covers auto."""
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    monkeypatch.setenv("GARBSEG_CHECKPOINTS", str(empty))
    monkeypatch.setenv("GARBSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GARBSEG_RUNTIME", "torch")


@pytest.fixture
def with_weights(tiny_checkpoints, monkeypatch):
    monkeypatch.setenv("GARBSEG_CHECKPOINTS", str(tiny_checkpoints))


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def real_photo() -> Path:
    return sorted((REAL_DATA / "val" / "images").glob("*.jpg"))[0]


# ----------------------------------------------------------------------------- home


@requires_real_data
def test_home_lists_models_and_the_configured_data():
    at = open_app()
    assert_clean(at)
    assert at.title[0].value.startswith("garbseg")
    table = at.dataframe[0].value
    assert len(table) == 9 and set(table["weights"]) == {UNTRAINED}
    text = " ".join(m.value for m in at.markdown)
    assert "0 of 9 models" in text and "garbage-seg" in text and "val: 60" in text


def test_home_marks_shipped_weights_and_reports_a_bad_data_folder(with_weights, tmp_path):
    at = open_app()
    table = at.dataframe[0].value
    assert table.set_index("model").loc[FAST, "weights"] == f"{FAST}.safetensors"
    assert table.set_index("model").loc[FAST, "recorded mIoU"] == pytest.approx(0.4321)
    assert "1 of 9 models" in " ".join(m.value for m in at.markdown)
    at.sidebar.text_input[0].set_value(str(tmp_path / "nowhere")).run()
    assert_clean(at)
    assert any("cannot be used" in e and "does not exist" in e for e in errors(at))


def test_sidebar_settings_survive_page_switches():
    at = open_app()
    at.sidebar.number_input[0].set_value(1).run()
    at.switch_page("pages/4_Models.py").run()
    assert at.sidebar.number_input[0].value == 1
    assert_clean(at)


# ----------------------------------------------------------------------------- segment


@requires_real_data
def test_segment_real_photo_gives_one_overlay_per_chosen_model():
    at = open_app("pages/1_Segment.py")
    assert_clean(at)
    photo = real_photo()
    at.file_uploader(key="segment_photos").upload(photo.name, photo.read_bytes(), "image/jpeg")
    at.multiselect(key="segment_compare").set_value([OTHER])
    at.run()
    assert_clean(at)
    assert not errors(at)
    captions = [c for image in at.image for c in image.captions]
    assert captions == ["photo", f"{FAST} - {UNTRAINED}", f"{OTHER} - {UNTRAINED}"]
    bundle = ["Download all masks and labels (zip)"]  # one zip for every photo and model shown
    assert [b.label for b in at.download_button] == ["Mask PNG", "Overlay PNG"] * 2 + bundle
    timings = [m.value for m in at.markdown if m.value.startswith("**") and " ms**" in m.value]
    assert len(timings) == 2

    at.radio(key="segment_style").set_value("outline").run()  # display change: masks come from the cache
    assert_clean(at)
    assert [b.label for b in at.download_button] == ["Mask PNG", "Outline PNG"] * 2 + bundle


@requires_real_data
def test_segment_on_the_sidebar_runtime_says_which_ran(tmp_path):
    import streamlit as st

    st.cache_resource.clear()  # engines live per process: make this test prepare its own, in its cache
    ui.clear_prepared()
    at = open_app("pages/1_Segment.py")
    runtime = at.selectbox(key="_w_garbseg_runtime")
    assert runtime.value == "torch"  # the default comes from $GARBSEG_RUNTIME
    runtime.set_value("auto").run()
    photo = real_photo()
    at.file_uploader(key="segment_photos").upload(photo.name, photo.read_bytes(), "image/jpeg")
    at.run()
    assert_clean(at)
    assert not errors(at)
    # The first answer comes from eager torch while auto is prepared in the background; then auto's.
    first = [m.value for m in at.markdown if m.value.startswith("**") and " ms**" in m.value]
    assert len(first) == 1 and first[0].endswith(" on `torch`)"), first
    ui.wait_prepared(TIMEOUT)
    at.run()
    assert not errors(at)
    cache = tmp_path / "cache"
    # Interactive use never calibrates int8: auto chose among the float runtimes, in its own file.
    choices = list(cache.glob(f"{FAST}-*/auto-*-float.json"))
    assert len(choices) == 1 and not list(cache.glob(f"{FAST}-*/auto-*-t?.json"))
    assert not list(cache.rglob("*int8*"))
    chosen = json.loads(choices[0].read_text())["runtime"]
    timings = [m.value for m in at.markdown if m.value.startswith("**") and " ms**" in m.value]
    assert len(timings) == 1 and timings[0].endswith(f" on `{chosen}`)"), (timings, chosen)
    at.switch_page("pages/2_Stream.py").run()  # the setting holds on the other page
    assert at.selectbox(key="_w_garbseg_runtime").value == "auto"


def test_segment_bad_upload_shows_an_error_and_keeps_the_good_one(with_weights):
    at = open_app("pages/1_Segment.py")
    good = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (80, 60), (90, 140, 200)).save(good, format="PNG")
    uploader = at.file_uploader(key="segment_photos")
    uploader.upload("broken.jpg", b"\xff\xd8\xff not really a jpeg", "image/jpeg")
    uploader.upload("fine.png", good.getvalue(), "image/png")
    at.run()
    assert_clean(at)
    assert len(errors(at)) == 1 and "broken.jpg" in errors(at)[0] and "not an image" in errors(at)[0]
    # The trained model carries no "untrained" mark.
    assert [c for image in at.image for c in image.captions] == ["photo", FAST]


# ----------------------------------------------------------------------------- stream


def tiny_video(frames: int = 4) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            rgb = np.full((48, 64, 3), 40 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def test_stream_segments_an_uploaded_video_and_offers_the_mp4():
    at = open_app("pages/2_Stream.py")
    assert_clean(at)
    at.file_uploader(key="video_upload").upload("clip.mp4", tiny_video(), "video/mp4")
    at.number_input(key="video_stride").set_value(1)
    at.run()
    at.button(key="video_start").click().run()
    assert_clean(at)
    assert not [e for e in errors(at) if "Live video" not in e]
    assert len(at.get("video")) == 1
    assert [m.value for m in at.metric][:1] == ["4 of 4"]
    assert any(c.value.startswith("Network on `torch`.") for c in at.caption)
    assert any(s["layout"]["title"]["text"] == "Per-frame latency" for s in plotly_specs(at))
    assert [b.label for b in at.download_button] == ["Download annotated mp4"]
    # The webcam tab falls back to a snapshot when WebRTC has no session (as under AppTest).
    assert len(at.camera_input) == 1


def test_stream_compares_models_side_by_side_on_one_video():
    at = open_app("pages/2_Stream.py")
    at.multiselect(key="stream_compare").set_value([OTHER])
    at.file_uploader(key="video_upload").upload("clip.mp4", tiny_video(), "video/mp4")
    at.number_input(key="video_stride").set_value(1)
    at.run()
    at.button(key="video_start").click().run()
    assert not [e for e in errors(at) if "Live video" not in e]
    assert len(at.get("video")) == 2
    labels = [m.label for m in at.metric]
    assert labels[0] == "Combined throughput" and labels.count("FPS (this model)") == 2
    assert [m.value for m in at.metric if m.label == "Frames segmented"] == ["4 of 4"] * 2
    assert [b.label for b in at.download_button] == ["Download annotated mp4"] * 2


def test_stream_unreadable_video_shows_an_error():
    at = open_app("pages/2_Stream.py")
    at.file_uploader(key="video_upload").upload("holiday.mp4", b"\x00\x01 not a video at all" * 50, "video/mp4")
    at.run()
    at.button(key="video_start").click().run()
    assert_clean(at)
    assert any("holiday.mp4" in e and "not a video" in e for e in errors(at))
    assert len(at.get("video")) == 0


# ----------------------------------------------------------------------------- benchmark


def run_benchmark(at: AppTest, *, source: str = "configured folder", archive: bytes | None = None,
                  size: int | str = "model default") -> AppTest:
    """A quick run: one model on eager torch, a 2-photo stratified sample (grown to one photo per class)."""
    at.multiselect(key="bench_models").set_value([FAST])
    at.multiselect(key="bench_runtimes").set_value(["torch"])
    at.selectbox(key="bench_size").set_value(size)
    at.number_input(key="bench_runs").set_value(3)
    at.number_input(key="bench_warmup").set_value(1)
    at.number_input(key="bench_max_images").set_value(2)
    at.radio(key="bench_source").set_value(source)
    if archive is not None:
        at.file_uploader(key="bench_zip").upload("set.zip", archive, "application/zip")
    at.button[0].click()  # the form's submit button
    return at.run()


@requires_real_data
def test_benchmark_on_real_images_gives_table_scatter_and_persisted_results(tmp_path):
    at = open_app("pages/3_Benchmark.py")
    assert any("No results yet" in i.value for i in at.info)
    run_benchmark(at)
    assert_clean(at)
    assert not errors(at)
    # Asked for 2 photos, the stratified sample holds one photo of each of the 6 classes.
    assert "6 photos of garbage-seg/val" in at.success[0].value
    assert any("rests on 6 photos" in c.value and "biological, cardboard, glass, metal, paper, plastic" in c.value
               for c in at.caption)
    table = at.dataframe[0].value
    assert list(table["model"]) == [FAST] and table.loc[0, "size"] == 224 and table.loc[0, "num_images"] == 6
    titles = [s["layout"]["title"]["text"] for s in plotly_specs(at)]
    assert titles[:2] == ["Speed vs accuracy", "IoU per class"] and "Latency of each timed run (batch 1)" in titles
    scatter = plotly_specs(at)[0]
    assert scatter["data"][0]["name"] == f"measured here - {UNTRAINED}"
    assert [b.label for b in at.download_button] == ["CSV", "JSON", "HTML report"]

    saved, problems = ResultsStore.open(str(tmp_path / "cache" / "results.sqlite")).rows()
    assert [r["model"] for r in saved] == [FAST] and len(saved[0]["latency_samples_ms"]) == 3 and not problems
    restarted = open_app("pages/3_Benchmark.py")  # a new session sees its own (none) unless it asks for all
    assert any("No results yet" in i.value for i in restarted.info)
    restarted.toggle(key="bench_shared").set_value(True).run()
    assert list(restarted.dataframe[0].value["model"]) == [FAST]
    assert len(plotly_specs(restarted)) >= 3


def small_garbage_set(folder: Path, count: int = 4) -> Path:
    """``count`` labelled photos of the embedded sample (one per class first), as their own data set."""
    import shutil

    from garbseg.core.paths import embedded_data_dir
    from garbseg.data import load_dataset, stratified_sample

    source = embedded_data_dir()
    dataset = load_dataset(source, "val")
    for sub in ("images", "labels"):
        (folder / "val" / sub).mkdir(parents=True)
    for i in stratified_sample(dataset, count)[:count]:
        image = dataset.image_paths[i]
        shutil.copy(image, folder / "val" / "images" / image.name)
        shutil.copy(source / "val" / "labels" / f"{image.stem}.txt", folder / "val" / "labels")
    (folder / "data.yaml").write_text((source / "data.yaml").read_text())
    return folder


def test_benchmark_defaults_score_the_whole_split_as_eval_does(with_weights, tiny_checkpoints, tmp_path,
                                                               monkeypatch):
    """Defaults only: trained models, each at its own size, torch and auto, the whole split."""
    from garbseg.data import load_dataset
    from garbseg.inference import Predictor, evaluate
    from garbseg.models import load_checkpoint

    data = small_garbage_set(tmp_path / "set", 4)
    monkeypatch.setenv("GARBSEG_DATA", str(data))
    at = open_app("pages/3_Benchmark.py")
    assert at.multiselect(key="bench_runtimes").value == ["torch", "auto"]
    at.number_input(key="bench_runs").set_value(3)  # only timing is shortened
    at.button[0].click()
    at.run()
    assert_clean(at)
    assert not errors(at), errors(at)
    rows = at.dataframe[0].value
    assert list(rows["runtime"]) == ["torch", "auto"] and set(rows["num_images"]) == {4}
    assert set(rows["size"]) == {224}  # the checkpoint's own input size
    loaded = load_checkpoint(tiny_checkpoints / f"{FAST}.safetensors")
    reference = evaluate(Predictor(loaded, 224), load_dataset(data, "val"), progress=False)["miou"]
    assert all(abs(m - reference) <= 0.01 for m in rows["miou"]), (list(rows["miou"]), reference)
    scatter = plotly_specs(at)[0]
    assert any("paper" in trace["name"] for trace in scatter["data"])
    assert "error_y" in scatter["data"][0]


def test_without_shared_data_the_embedded_sample_is_used(monkeypatch, tmp_path):
    from garbseg.core import paths

    monkeypatch.delenv("GARBSEG_DATA", raising=False)
    monkeypatch.setattr(paths, "shared_data_dir", lambda: tmp_path / "no-shared")
    home = open_app()
    assert_clean(home)
    text = " ".join(m.value for m in home.markdown)
    assert "garbage-seg" in text and "val: 60" in text and "sample_data" in text
    bench = run_benchmark(open_app("pages/3_Benchmark.py"))
    assert_clean(bench)
    assert "photos of garbage-seg/val" in bench.success[0].value
    assert bench.dataframe[0].value.loc[0, "miou"] >= 0


def test_benchmark_on_an_uploaded_zip(tmp_path):
    data = make_yolo_set(tmp_path / "set", n_train=1, n_val=3, size=48)
    at = run_benchmark(open_app("pages/3_Benchmark.py"), source="uploaded zip", archive=zip_folder(data, "export/"))
    assert_clean(at)
    assert not errors(at), errors(at)
    assert "2 photos of export/val" in at.success[0].value
    heatmap = next(s for s in plotly_specs(at) if s["layout"]["title"]["text"] == "IoU per class")
    assert heatmap["data"][0]["x"] == ["background", "red", "blue"]  # the zip's classes, not the default 7


def test_benchmark_bad_zip_shows_an_error_not_a_trace():
    at = run_benchmark(open_app("pages/3_Benchmark.py"), source="uploaded zip", archive=b"PK\x03\x04 broken")
    assert_clean(at)
    assert any("Cannot open the labelled set" in e and "not a zip" in e for e in errors(at))
    assert not at.success


def _visitor(index: int, sizes: list[int], barrier, results) -> None:
    """One browser session, in its own process (AppTest is not thread-safe: two in one process can
    corrupt each other's widget registry): benchmark, then report what it sees, own and shared."""
    at = open_app("pages/3_Benchmark.py")
    for size in sizes:
        run_benchmark(at, source="none (speed only)", size=size)
        assert_clean(at)
    barrier.wait(timeout=300)  # both sessions have measured
    at.run()
    own = sorted(at.dataframe[0].value["size"])
    at.toggle(key="bench_shared").set_value(True).run()
    shared = sorted(at.dataframe[0].value["size"])
    at.toggle(key="bench_shared").set_value(False).run()
    barrier.wait(timeout=300)
    if index == 0:  # the first visitor clears: only its own rows go
        next(b for b in at.button if b.label == "Clear results").click().run()
        assert any("No results yet" in i.value for i in at.info)
    barrier.wait(timeout=300)
    at.run()
    left = [] if any("No results yet" in i.value for i in at.info) else sorted(at.dataframe[0].value["size"])
    results.put((index, own, shared, left))


def test_two_sessions_benchmarking_at_once_keep_all_their_rows_and_see_only_their_own(tmp_path):
    """Two visitors run benchmarks at the same time against one results database (two processes, as
    two server threads would): each keeps every row it measured, sees none of the other's until it asks
    for the shared view, and clears only its own."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch thread pools
    barrier, results = spawn.Barrier(2), spawn.Queue()
    visitors = [spawn.Process(target=_visitor, args=(i, sizes, barrier, results))
                for i, sizes in enumerate([[224, 320], [224]])]
    for v in visitors:
        v.start()
    reports = dict((r[0], r[1:]) for r in (results.get(timeout=300) for _ in visitors))
    for v in visitors:
        v.join(60)
    assert [v.exitcode for v in visitors] == [0, 0]
    (mine_own, mine_shared, mine_left), (theirs_own, theirs_shared, theirs_left) = reports[0], reports[1]
    assert mine_own == [224, 320] and theirs_own == [224]
    assert mine_shared == theirs_shared == [224, 224, 320]
    assert len(ResultsStore.open(str(tmp_path / "cache" / "results.sqlite")).rows()[0]) == 1  # after the clear
    assert mine_left == [] and theirs_left == [224]


def test_a_bad_value_in_the_results_database_is_a_warning_not_a_trace(tmp_path):
    store = ResultsStore.open(str(tmp_path / "cache" / "results.sqlite"))
    good = {"model": FAST, "runtime": "torch", "size": 224, "threads": 1, "latency_p50_ms": 10.0,
            "latency_p95_ms": 11.0, "fps": 100.0, "latency_samples_ms": [10.0, 11.0]}
    store.add([good, {**good, "size": 320, "latency_p50_ms": "fast"}], "someone-else")
    at = open_app("pages/3_Benchmark.py")
    at.toggle(key="bench_shared").set_value(True).run()
    assert_clean(at)
    assert list(at.dataframe[0].value["size"]) == [224]
    assert any("latency_p50_ms='fast' is not a number; left out" in w.value for w in at.warning)


# ----------------------------------------------------------------------------- models


def test_model_cards_read_checkpoint_metadata(with_weights):
    at = open_app("pages/4_Models.py")
    assert_clean(at)
    labels = [e.label for e in at.expander]
    assert labels.count(FAST) == 1 and sum(UNTRAINED in label for label in labels) == 8
    text = " ".join(m.value for m in at.markdown)
    assert "Initialisation" in text and "garbage-seg/train" in text and "mobilenet_v3_large backbone" in text
    assert {m.label: m.value for m in at.metric}["mIoU"] == "0.432"


def test_a_damaged_checkpoint_is_reported_where_it_matters(tmp_path, monkeypatch):
    folder = tmp_path / "damaged"
    folder.mkdir()
    (folder / f"{OTHER}.safetensors").write_bytes(b"\x00" * 64)  # e.g. a half-copied file
    monkeypatch.setenv("GARBSEG_CHECKPOINTS", str(folder))
    home = open_app()
    assert_clean(home)
    assert home.dataframe[0].value.set_index("model").loc[OTHER, "weights"] == f"{OTHER}.safetensors"
    cards = open_app("pages/4_Models.py")
    assert_clean(cards)
    assert any(f"Cannot read the checkpoint of {OTHER}" in e for e in errors(cards))
    stream = open_app("pages/2_Stream.py")
    assert_clean(stream)
    assert any(f"Cannot load {OTHER}" in e for e in errors(stream))
    segment = open_app("pages/1_Segment.py")
    photo = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (40, 30)).save(photo, format="PNG")
    segment.file_uploader(key="segment_photos").upload("p.png", photo.getvalue(), "image/png")
    segment.multiselect(key="segment_compare").set_value([FAST])
    segment.run()
    assert_clean(segment)
    assert any(f"{OTHER} failed on p.png" in e for e in errors(segment))
    assert [c for image in segment.image for c in image.captions] == ["photo", f"{FAST} - {UNTRAINED}"]

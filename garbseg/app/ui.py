"""Streamlit glue shared by the pages; the only garbseg module that imports streamlit.

Models are loaded once per process with ``st.cache_resource`` (shared by all sessions, keyed by
model name, checkpoint path and its mtime, so a checkpoint rewritten by training is picked up), and
so are their inference engines (also keyed by input size, runtime, threads and data folder);
tables and metadata use ``st.cache_data``. Settings chosen in the sidebar survive page switches.

Streamlit runs each session in its own thread: one lock (``INFERENCE_LOCK``) serialises inference
across them, so two sessions never split the cores (or an engine) between them.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image

from ..bench.results import ResultsError, ResultsStore, database_path, merge_rows
from ..core.machine import default_threads, torch_threads
from ..core.paths import default_data_dir
from ..data import available_splits, load_dataset, preferred_split
from ..inference import Predictor, SharedPredictor
from ..inference.runtimes import RUNTIMES
from ..models import shipped_checkpoint
from ..models.model_card import model_card as build_model_card
from ..models.zoo import BACKBONES, DEFAULT_CLASSES, HEADS, compose_name, default_model, model_label, open_model
from .segment import LabelledPhoto, Segmentation, labelled_photo, segment_image
from .uploads import digest, discard, extract_dataset_zip, sweep_stale

_PERSIST = {"threads": "garbseg_threads", "data_dir": "garbseg_data_dir",
            "runtime": "garbseg_runtime"}  # setting -> session key
RUNTIME_ENV = "GARBSEG_RUNTIME"
ICE_ENV = "GARBSEG_ICE_SERVERS"  # JSON list of RTCIceServer, e.g. [{"urls": ["stun:stun.example.org:3478"]}]
_TEMP_PATH = re.compile(r"\S*?" + re.escape(tempfile.gettempdir().rstrip("/")) + r"/garbseg-[^/\s]+/?")
INFERENCE_LOCK = threading.Lock()


class InferenceSection:
    """``with InferenceSection(threads):`` holds ``INFERENCE_LOCK`` and pins torch to ``threads`` for the
    block, so no session's page run changes the process-wide thread count under another's timing."""

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self._pin = None

    def __enter__(self):
        INFERENCE_LOCK.acquire()
        try:
            self._pin = torch_threads(self.threads)
            self._pin.__enter__()
        except BaseException:
            INFERENCE_LOCK.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._pin.__exit__(*exc)
        finally:
            INFERENCE_LOCK.release()


@dataclass
class Settings:
    threads: int
    data_dir: str
    runtime: str = "auto"  # a name from garbseg.inference.runtimes.RUNTIMES


def show_error(message: str, exc: BaseException | None = None) -> None:
    """A readable error in the page (the app keeps running); the exception text, never its trace."""
    detail = f"\n\n{type(exc).__name__}: {exc}" if exc is not None and str(exc) not in message else ""
    st.error(plain(hide_temp_paths(f"{message}{detail}")))  # file names are the visitor's: shown as typed, never as markup


def page_setup(title: str, icon: str = ":material/recycling:") -> Settings:
    st.set_page_config(page_title=f"{title} - garbseg", page_icon=icon, layout="wide")
    sweep_stale_uploads()
    return sidebar_settings()


def _persisted(setting: str, default):
    key = _PERSIST[setting]
    if key not in st.session_state:
        st.session_state[key] = default
    # Widgets forget their value when their page is left; a plain key does not. Copy it in each run.
    st.session_state[f"_w_{key}"] = st.session_state[key]
    return key


def _store(key: str) -> None:
    st.session_state[key] = st.session_state[f"_w_{key}"]


def ice_servers() -> tuple[list[dict], str | None]:
    """STUN/TURN servers for the webcam's WebRTC link from ``$GARBSEG_ICE_SERVERS`` (a JSON list of
    ``{"urls": ..., "username": ..., "credential": ...}``); none by default (same machine or LAN), and
    a warning for a value that is not such a list."""
    value = os.environ.get(ICE_ENV, "").strip()
    if not value:
        return [], None
    try:
        servers = json.loads(value)
    except ValueError as exc:
        return [], f"{ICE_ENV} is not JSON ({exc}); no STUN/TURN server is used"
    if not (isinstance(servers, list) and all(isinstance(x, dict) and x.get("urls") for x in servers)):
        return [], f"{ICE_ENV} must be a JSON list of objects with \"urls\"; no STUN/TURN server is used"
    return servers, None


def hide_temp_paths(text: str) -> str:
    """A message without the server's temp folders in it (``/tmp/garbseg-dataset-x/a/b.png`` -> ``a/b.png``)."""
    return _TEMP_PATH.sub("", text)


def default_runtime() -> tuple[str, str | None]:
    """``$GARBSEG_RUNTIME`` when it names a runtime, else ``auto``; plus a warning for a bad value."""
    value = os.environ.get(RUNTIME_ENV, "").strip()
    if not value or value in RUNTIMES:
        return value or "auto", None
    return "auto", f"{RUNTIME_ENV}={value!r} is not a runtime ({', '.join(RUNTIMES)}); using auto"


def sidebar_settings() -> Settings:
    """Threads, the inference runtime and the labelled data folder, in the sidebar of every page."""
    with st.sidebar:
        st.subheader("Settings")
        cores = default_threads()
        key = _persisted("threads", cores)
        st.number_input("CPU threads", min_value=1, max_value=max(cores, 1) * 2, step=1, key=f"_w_{key}",
                        on_change=_store, args=(key,), help="threads used for inference")
        runtime, problem = default_runtime()
        runtime_key = _persisted("runtime", runtime)
        st.selectbox("Runtime", RUNTIMES, key=f"_w_{runtime_key}", on_change=_store, args=(runtime_key,),
                     help="What runs the network on the Segment and Stream pages. auto: the fastest runtime "
                          "that agrees with eager PyTorch here, chosen on first use of a model and size and "
                          "cached; int8 runtimes only once calibrated (by `bench` or `predict --calibrate`). "
                          f"Default from the {RUNTIME_ENV} environment variable.")
        if problem:
            st.warning(problem)
        data_key = _persisted("data_dir", str(default_data_dir()))
        st.text_input("Labelled data folder", key=f"_w_{data_key}", on_change=_store, args=(data_key,),
                      help="YOLOv8-seg root (data.yaml), image+mask folders or COCO. "
                           "Default from the GARBSEG_DATA environment variable.")
    settings = Settings(int(st.session_state[key]), str(st.session_state[data_key]).strip(),
                        str(st.session_state[runtime_key]))
    return settings  # threads are pinned per call, inside the inference lock (inference_section)


# ----------------------------------------------------------------------------- data


@st.cache_data(ttl=60, show_spinner=False)
def dataset_summary(path: str) -> dict:
    """Name, layout, classes and images per split of a labelled folder; ``{"error": ...}`` if unusable."""
    if not path:
        return {"error": "no data folder set"}
    try:
        splits = available_splits(path) or [None]
        counts, first = {}, None
        for split in splits:
            ds = load_dataset(path, split)
            first = first or ds
            counts[split or Path(path).name] = len(ds)
        return {"name": first.name.split("/")[0], "layout": first.layout, "classes": list(first.classes),
                "splits": counts, "path": str(Path(path).resolve())}
    except Exception as exc:  # any unreadable folder becomes a message on the page
        return {"error": str(exc)}


@st.cache_resource(max_entries=4, show_spinner=False)
def _example_set(path: str):
    return load_dataset(path, preferred_split(path))


def example_names(path: str) -> list[str]:
    """Photos of the labelled folder's evaluation split, offered as examples; [] when it cannot be read."""
    try:
        return [p.name for p in _example_set(path).image_paths]
    except Exception:  # no usable data folder: the page simply offers no examples
        return []


@st.cache_resource(max_entries=32, show_spinner=False)
def example(path: str, name: str) -> LabelledPhoto:
    """One example photo with its labels, decoded once per process."""
    return labelled_photo(_example_set(path), name)


def classes_for_untrained(settings: Settings) -> list[str]:
    """Classes given to models without weights: the configured data set's, else the default 7."""
    summary = dataset_summary(settings.data_dir)
    return summary.get("classes") or list(DEFAULT_CLASSES)


# ----------------------------------------------------------------------------- models


def _checkpoint_key(name: str) -> tuple[str | None, float | None]:
    path = shipped_checkpoint(name)
    return (str(path), path.stat().st_mtime) if path else (None, None)


@st.cache_resource(max_entries=12, show_spinner="Loading model...")
def _load_model(name: str, checkpoint: str | None, mtime: float | None, classes: tuple[str, ...]):
    loaded = open_model(checkpoint or name, list(classes))
    # One throw-away prediction: the first call pays one-off kernel setup, which would otherwise
    # be billed to whichever model happens to run first on the Segment page.
    size = loaded.meta.input_size
    Predictor(loaded).predict(Image.new("RGB", (size, size)))
    return loaded


def get_model(name: str, classes: list[str]):
    """The shipped model (or random weights for ``classes`` when none ships), loaded once per process."""
    checkpoint, mtime = _checkpoint_key(name)
    return _load_model(name, checkpoint, mtime, () if checkpoint else tuple(classes))


def _server_log(message: str) -> None:
    print(f"garbseg {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _build_predictor(loaded, input_size: int | None, runtime: str, threads: int, data_dir: str,
                     log=None, exclusive=None) -> Predictor:
    # calibrate=False: int8 calibration takes minutes per model; auto uses int8 only once calibrated.
    predictor = Predictor(loaded, input_size, runtime=runtime, threads=threads, data_dir=data_dir or None,
                          calibrate=False, log=log, exclusive=exclusive)
    predictor.predict(Image.new("RGB", (predictor.size, predictor.size)))  # one-off setup, not billed later
    return predictor


@st.cache_resource(max_entries=12, show_spinner=False)
def _engine(name: str, checkpoint: str | None, mtime: float | None, classes: tuple[str, ...],
            input_size: int | None, runtime: str, threads: int, data_dir: str) -> Predictor:
    loaded = _load_model(name, checkpoint, mtime, classes)
    with InferenceSection(threads):  # keeps other sessions' inference off the cores while it is set up
        return _build_predictor(loaded, input_size, runtime, threads, data_dir)


# Runtimes other than eager torch are prepared in a background thread (auto exports, compiles, checks
# and times them: ~10 s on first use of a model in a fresh cache); until one is ready, eager torch
# answers, so the first overlay comes in about a second. One Future per engine key, per process
# (like st.cache_resource); a failed preparation keeps its exception and is reported on use.
# A page may hold the start back until its first answer is on screen (``start_preparing``): the
# preparation is Python-heavy (the ONNX exporter) and would otherwise slow that answer down.
_PREPARED: dict[tuple, Future] = {}
_WAITING: dict[tuple, threading.Thread] = {}  # registered, not started yet
_PREPARED_LOCK = threading.Lock()


def _prepare(key: tuple, loaded, start: bool) -> Future:
    with _PREPARED_LOCK:
        future = _PREPARED.get(key)
        if future is None:
            future = _PREPARED[key] = Future()
            input_size, runtime, threads, data_dir = key[4:]

            def work() -> None:
                # Not under INFERENCE_LOCK: eager answers meanwhile (auto times its candidates in
                # interleaved blocks, so that load hits all of them alike).
                try:
                    # The ONNX export alone holds the inference lock: torch.export's fake-tensor
                    # mode is process-wide, and an eager answer during it would fail.
                    future.set_result(_build_predictor(loaded, input_size, runtime, threads, data_dir,
                                                       log=_server_log,
                                                       exclusive=lambda: InferenceSection(threads)))
                    _server_log(f"{key[0]} at {input_size or 'its size'} on {future.result().resolved_runtime}: ready")
                except BaseException as exc:  # reported to whoever asks for this engine
                    future.set_exception(exc)

            _WAITING[key] = threading.Thread(target=work, name=f"garbseg-prepare-{key[0]}-{runtime}", daemon=True)
        thread = _WAITING.pop(key, None) if start else None
    if thread is not None:
        thread.start()
    return future


def start_preparing() -> None:
    """Start every runtime preparation that a page registered with ``start=False``."""
    with _PREPARED_LOCK:
        threads = list(_WAITING.values())
        _WAITING.clear()
    for thread in threads:
        thread.start()


def clear_prepared() -> None:
    """Forget every prepared runtime (as ``st.cache_resource.clear()`` forgets the cached ones)."""
    with _PREPARED_LOCK:
        _PREPARED.clear()
        _WAITING.clear()


def preparing() -> bool:
    """True while some runtime is still being prepared in the background (eager answers meanwhile)."""
    with _PREPARED_LOCK:
        return any(not f.done() for f in _PREPARED.values())


def wait_prepared(timeout: float | None = None) -> None:
    """Start what waits, then block until every background preparation has finished (tests, benchmarks)."""
    start_preparing()
    with _PREPARED_LOCK:
        futures = list(_PREPARED.values())
    futures_wait(futures, timeout)


def get_predictor(name: str, classes: list[str], settings: Settings, input_size: int | None = None, *,
                  start: bool = True) -> SharedPredictor:
    """The model on the runtime chosen in ``settings``, prepared once per process; calls serialised.

    A runtime other than ``torch`` is prepared in a background thread on first use (``start=False``:
    only registered, started by ``start_preparing``); until it is ready the eager model answers
    (``resolved_runtime`` says ``torch``), so the first answer never waits for it."""
    checkpoint, mtime = _checkpoint_key(name)
    key = (name, checkpoint, mtime, () if checkpoint else tuple(classes), input_size, settings.runtime,
           settings.threads, settings.data_dir)
    if settings.runtime != "torch":
        future = _prepare(key, _load_model(*key[:4]), start)
        if future.done():
            if future.exception() is not None:  # reported once; the next call prepares it again
                with _PREPARED_LOCK:
                    _PREPARED.pop(key, None)
            return SharedPredictor(future.result(), InferenceSection(settings.threads))
    engine = _engine(*key[:5], "torch", *key[6:])
    return SharedPredictor(engine, InferenceSection(settings.threads))


def warm(name: str, classes: list[str], settings: Settings, input_size: int | None = None) -> None:
    """Load ``name`` and its eager engine now (a page calls it before the first upload); its runtime's
    preparation is registered, to start with the first answer (``start_preparing``). Never raises: a
    model that cannot load is reported where it is used, not by the warm-up."""
    try:
        get_predictor(name, classes, settings, input_size, start=False)
    except Exception:  # e.g. a damaged checkpoint: the page that uses the model says so
        pass


def label(name: str) -> str:
    """A model name as shown in pickers: untrained models say so."""
    return model_label(name, shipped_checkpoint(name) is not None)


@st.cache_data(max_entries=64, show_spinner=False)
def segment_cached(photo_digest: str, _image, name: str, classes: tuple[str, ...], checkpoint: str | None,
                   mtime: float | None, input_size: int | None, settings: Settings, ran_on: str,
                   _predictor=None) -> Segmentation:
    """A photo's segmentation by one model; recomputed when photo, model, size, settings or the runtime
    that serves them (``ran_on``: eager first, the prepared runtime once ready) change."""
    return segment_image(_predictor, _image, model=name, trained=_predictor.loaded.trained)


def segment(photo, name: str, classes: list[str], settings: Settings, input_size: int | None = None) -> Segmentation:
    """``name``'s segmentation of ``photo``: eager until the settings' runtime is ready; the page starts
    that runtime's preparation (``start_preparing``) once its answers are on screen."""
    checkpoint, mtime = _checkpoint_key(name)
    predictor = get_predictor(name, classes, settings, input_size, start=False)
    return segment_cached(photo.digest, photo.image, name, tuple(classes), checkpoint, mtime, input_size, settings,
                          predictor.resolved_runtime, _predictor=predictor)


def model_picker(key: str) -> str:
    """Two pickers (backbone, head) that compose ``<backbone>-<head>``; they start on a trained model."""
    backbone_default, head_default = default_model().rsplit("-", 1)
    left, right = st.columns(2)
    backbones, heads = list(BACKBONES), list(HEADS)
    backbone = left.selectbox("Backbone", backbones, index=backbones.index(backbone_default), key=f"{key}_backbone")
    head = right.selectbox("Head", heads, index=heads.index(head_default), key=f"{key}_head")
    name = compose_name(backbone, head)
    if shipped_checkpoint(name) is None:
        st.caption(f"`{name}`: **{label(name).split(' - ', 1)[1]}** - no weights ship for it yet")
    return name


@st.cache_data(show_spinner=False)
def _model_card(name: str, checkpoint: str | None, mtime: float | None) -> dict:
    return build_model_card(name, checkpoint)


def model_card(name: str, checkpoint: Path | None) -> dict:
    """A model's card from its checkpoint metadata (re-read when the file changes)."""
    mtime = checkpoint.stat().st_mtime if checkpoint else None
    return _model_card(name, str(checkpoint) if checkpoint else None, mtime)


# ----------------------------------------------------------------------------- benchmark results


@st.cache_resource(show_spinner=False)
def _results_store(path: str) -> ResultsStore:
    return ResultsStore.open(path)


def results_store() -> ResultsStore | None:
    """The results database of this process (None, with an error shown, where it cannot be used)."""
    try:
        store = _results_store(str(database_path()))
    except ResultsError as exc:
        st.error(f"Results are not saved: {exc}")
        return None
    for notice in store.take_notices():  # reported once, to whoever opens it first
        st.warning(notice)
    return store


def session_id() -> str:
    """This browser session's id: the owner of the results it measures."""
    if "garbseg_session" not in st.session_state:
        st.session_state["garbseg_session"] = uuid.uuid4().hex
    return st.session_state["garbseg_session"]


def bench_rows(shared: bool = False) -> list[dict]:
    """This session's saved results (``shared``: every session's), checked; problems shown as warnings."""
    store = results_store()
    if store is None:
        return list(st.session_state.get("bench_rows_unsaved", []))
    rows, problems = store.rows(None if shared else session_id())
    if problems:
        st.warning(f"{len(problems)} problem(s) with stored results: " + "; ".join(problems[:5])
                   + (" ..." if len(problems) > 5 else ""))
    return rows


def add_bench_rows(rows: list[dict]) -> None:
    """Save this session's new rows (each replaces its own older row with the same key)."""
    store = results_store()
    try:
        if store is None:
            raise ResultsError("no results database")
        store.add(rows, session_id())
    except ResultsError as exc:
        kept = st.session_state.setdefault("bench_rows_unsaved", [])
        kept[:] = merge_rows(kept, rows)
        st.warning(f"Results kept for this session only: {exc}")


def clear_bench_rows(everyone: bool = False) -> int:
    """Delete this session's rows (``everyone``: all sessions'); how many went."""
    st.session_state.pop("bench_rows_unsaved", None)
    store = results_store()
    if store is None:
        return 0
    try:
        return store.clear(None if everyone else session_id())
    except ResultsError as exc:
        st.error(str(exc))
        return 0


@st.cache_resource(max_entries=4, ttl=3600, show_spinner="Unpacking the zip...",
                   on_release=lambda folder: discard(folder))
def _extract_zip(key: str, _data: bytes, name: str) -> str:
    return str(extract_dataset_zip(_data, name=name))


def extract_zip(data: bytes, name: str = "the zip") -> str:
    """Folder of an uploaded zipped data set, unpacked once per distinct upload (deleted when evicted)."""
    return _extract_zip(digest(data), data, name)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*{}\[\]()#|<>$!])")  # what can start markup, links, HTML or LaTeX


def plain(text: str) -> str:
    """``text`` (a file name a visitor chose) escaped so Markdown shows it as typed, never as markup."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


@st.cache_resource(show_spinner=False)
def sweep_stale_uploads() -> int:
    """Once per server process: remove temp folders left by sessions that ended hours ago."""
    return len(sweep_stale())

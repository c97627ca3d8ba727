"""The package's shape: layers without import circles, a library that imports without Streamlit, one
error base, metadata that round-trips and never carries a machine's paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from garbseg.models import CheckpointError, CheckpointMeta

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import import_graph  # noqa: E402


def test_no_import_cycles_and_no_function_level_imports_inside_garbseg():
    edges, function_level = import_graph.graph(ROOT)
    assert len(edges) > 40  # the walk found the package
    assert import_graph.cycles(edges) == []
    assert function_level == []


def test_cycle_finder_finds_a_planted_cycle():
    edges = {"garbseg.a": {"garbseg.b"}, "garbseg.b": {"garbseg.c"}, "garbseg.c": {"garbseg.a"}, "garbseg.d": set()}
    assert import_graph.cycles(edges) == [["garbseg.a", "garbseg.b", "garbseg.c"]]


def test_library_imports_without_streamlit():
    # Every module but the app's Streamlit glue, with `import streamlit` made to fail.
    modules = sorted(import_graph.graph(ROOT)[0])
    code = ("import sys, importlib; sys.modules['streamlit'] = None\n"
            f"for m in {[m for m in modules if m not in ('garbseg.app.ui', 'garbseg.__main__')]!r}: importlib.import_module(m)\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_every_deliberate_error_shares_one_base():
    from garbseg.app.uploads import UploadError
    from garbseg.core import GarbsegError
    from garbseg.data import DatasetError
    from garbseg.inference.runtimes import RuntimeUnavailable
    from garbseg.models import UnknownModelError
    from garbseg.models.backbone_init import BackboneInitError
    from garbseg.present.video import VideoError

    for error in (UploadError, DatasetError, RuntimeUnavailable, UnknownModelError, BackboneInitError, VideoError,
                  CheckpointError):
        assert issubclass(error, GarbsegError), error


def test_metadata_round_trips_and_drops_machine_paths():
    meta = CheckpointMeta(model="mobilenet_v2-lraspp", classes=["background", "glass"], input_size=320,
                          data={"name": "garbage-seg/train", "root": "/home/someone/data", "train_images": 3},
                          recipe={"init_from": "/root/zoo/runs/a/mobilenet_v2-lraspp/best.safetensors", "lr": 1e-3},
                          exported_from="/tmp/x/best.safetensors", extra={"future_key": 1})
    assert meta.data == {"name": "garbage-seg/train", "train_images": 3}
    assert meta.recipe["init_from"] == "runs/a/mobilenet_v2-lraspp/best.safetensors"
    assert meta.exported_from == "best.safetensors"
    again = CheckpointMeta.from_json(meta.to_json())
    assert again == meta and again.to_dict()["future_key"] == 1
    assert again.normalization == {"mean": list(meta.mean), "std": list(meta.std)}


@pytest.mark.parametrize("change, message", [
    ({"input_size": 0}, "input_size"),
    ({"classes": ["background"]}, "classes"),
    ({"normalization": {"mean": [0.5, 0.5], "std": [1, 1, 1]}}, "normalization"),
    ({"normalization": {"mean": [0.5] * 3, "std": [0, 1, 1]}}, "normalization"),
    ({"model": None}, "model"),
    ({"format_version": 99}, "up to v1"),
])
def test_damaged_metadata_is_a_checkpoint_error(change, message):
    good = CheckpointMeta(model="mobilenet_v2-lraspp", classes=["background", "glass"]).to_dict()
    with pytest.raises(CheckpointError, match=message):
        CheckpointMeta.from_dict({**good, **change}, "f.safetensors")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        CheckpointMeta.from_json("{half", "f.safetensors")


def test_shipped_files_carry_no_absolute_paths():
    from safetensors import safe_open

    for path in sorted((ROOT / "checkpoints").glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata()["garbseg"]  # the raw header, as written
        assert '"/' not in header, path.name

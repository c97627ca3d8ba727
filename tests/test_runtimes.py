"""Runtimes agree with eager PyTorch, are cached by weights, and fall back instead of crashing.

Small and fast on purpose: the tiny trained LR-ASPP at 64 px from conftest (trained weights make
argmax parity meaningful), one ONNX export shared by the module. Speed is measured by
benchmarks/runtimes.py, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from garbseg.models import load_checkpoint, random_model
from garbseg.data import load_dataset, normalize_image
from garbseg.inference import Predictor, prepare_image, upsample_argmax
from garbseg.models import head_logits
from garbseg.core.machine import cpu_supports_bf16
from garbseg.inference.runtimes import build_engine, check_engine, int8_layers
from garbseg.inference.runtimes.cache import model_dir
from garbseg.inference.runtimes import INT8_RUNTIMES
from garbseg.inference.runtimes.checks import PARITY_THRESHOLD
from garbseg.inference.runtimes.export import nodes_of_modules, onnx_path

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
has_ort = pytest.mark.skipif(not __import__("importlib").util.find_spec("onnxruntime"), reason="onnxruntime missing")
has_ov = pytest.mark.skipif(not __import__("importlib").util.find_spec("openvino"), reason="openvino missing")


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """A private cache for this module; one torch thread (the machine may be busy: OpenMP spins)."""
    folder = tmp_path_factory.mktemp("garbseg_cache")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GARBSEG_CACHE", str(folder))
        torch.set_num_threads(1)
        yield folder
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_checkpoint(tiny_run)


@pytest.fixture(scope="module")
def val_images(tiny_data):
    ds = load_dataset(tiny_data, "val")
    return [ds.load_raw(i)[0] for i in range(len(ds))]


def eager_vs(engine_name, loaded, images, tiny_data) -> float:
    engine = build_engine(loaded, engine_name, size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    assert engine.name == engine_name
    ref = Predictor(loaded, SIZE)
    batch = ref.preprocess(images)
    # Compiled runtimes return the head's low-resolution logits; compare classes at the input size.
    fast = np.stack([upsample_argmax(engine(batch[i : i + 1]), SIZE, SIZE) for i in range(len(batch))])
    return float((fast == ref.logits(batch).argmax(1).numpy()).mean())


# --- shared pre/post-processing -----------------------------------------------------------------

def test_fast_preprocessing_matches_the_reference_transform(val_images):
    big = val_images[0].resize((200, 150))
    for image in (val_images[0], big):
        fast = prepare_image(image, SIZE, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        ref = normalize_image(image, SIZE).numpy()
        assert fast.shape == ref.shape and fast.dtype == np.float32
        assert np.abs(fast - ref).max() <= 1.01 / 255 / 0.224  # at most one grey level apart


@pytest.mark.parametrize("height,width", [(64, 64), (200, 150), (40, 30)])
def test_fast_upsampling_matches_torch(height, width):
    logits = torch.nn.functional.interpolate(torch.randn(1, 5, 8, 8) * 4, size=(SIZE, SIZE), mode="bilinear")
    ref = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    ref = ref[0].argmax(0).numpy()
    assert (upsample_argmax(logits, height, width) == ref).mean() > 0.999


def test_flip_averaging_averages_the_photo_and_its_mirror(loaded, val_images):
    plain, flipped = Predictor(loaded, SIZE), Predictor(loaded, SIZE, flip=True)
    batch = plain.preprocess(val_images)
    mirror = batch.flip(-1)
    expected = (plain.logits(batch).softmax(1) + plain.logits(mirror).softmax(1).flip(-1)) / 2
    scores = flipped.logits(batch)
    torch.testing.assert_close(scores.softmax(1), expected)
    # The trained network is not mirror-symmetric; its flip average is, to the last bit.
    assert not torch.equal(plain.logits(mirror).flip(-1), plain.logits(batch))
    assert torch.equal(flipped.logits(mirror).flip(-1), scores)


# --- parity of float runtimes ---------------------------------------------------------------------

def test_torch_opt_agrees_with_eager(loaded, val_images, tiny_data):
    assert eager_vs("torch-opt", loaded, val_images, tiny_data) >= PARITY_THRESHOLD


@has_ort
def test_onnx_agrees_with_eager(loaded, val_images, tiny_data):
    assert eager_vs("onnx", loaded, val_images, tiny_data) >= PARITY_THRESHOLD


@has_ov
def test_openvino_agrees_with_eager(loaded, val_images, tiny_data):
    assert eager_vs("openvino", loaded, val_images, tiny_data) >= PARITY_THRESHOLD


@has_ort
def test_predictor_on_onnx_gives_the_eager_masks(loaded, val_images, tiny_data):
    fast = Predictor(loaded, SIZE, runtime="onnx", threads=1, data_dir=str(tiny_data))
    assert fast.resolved_runtime == "onnx"
    for image in val_images:
        assert (fast.predict(image) == Predictor(loaded, SIZE).predict(image)).mean() >= PARITY_THRESHOLD
    assert fast.last_timing.total_ms > 0


@has_ort
def test_onnx_threads_stop_spinning_after_each_run(loaded, tiny_data):
    # Spinning threads left behind would slow the next model timed or run side by side.
    engine = build_engine(loaded, "onnx", size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    options = engine.session.get_session_options()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


@has_ov
def test_int8_check_measures_the_miou_change(loaded, tiny_data):
    engine = build_engine(loaded, "openvino-int8", size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    result = check_engine(loaded, engine, data_dir=tiny_data)
    assert {"eager_miou", "miou", "miou_delta", "passed", "agreement"} <= set(result)
    assert result["miou_delta"] == pytest.approx(result["miou"] - result["eager_miou"])
    # cached: the same answer without running anything
    assert check_engine(loaded, engine, data_dir=tiny_data)["seconds"] == result["seconds"]


def _quantised_convolutions(xml: str) -> dict[str, bool]:
    """Every convolution (depthwise ones are GroupConvolution) of an OpenVINO int8 file -> whether an
    input of it is quantised."""
    import openvino as ov

    quantised = {}
    for op in ov.Core().read_model(xml).get_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution"):
            sources = {op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())}
            quantised[op.get_friendly_name()] = "FakeQuantize" in sources or "Convert" in sources
    return quantised


def _convs_of(quantised: dict[str, bool], nodes: set[str]) -> set[str]:
    # A convolution with a bias is named "NODE/WithoutBiases" in OpenVINO, after the ONNX node it came from.
    return {name for name in quantised if name.split("/", 1)[0] in nodes}


@has_ov
def test_int8_keeps_the_gates_in_float(loaded, tiny_data):
    """The tiny model is MobileNetV3-LR-ASPP: every convolution of its squeeze-excitation gates stays
    float32, the rest (trunk and head) is quantised."""
    from garbseg.inference.runtimes import openvino_engines

    engine = build_engine(loaded, "openvino-int8", size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    onnx_file = Path(engine.details["file"]).with_name(f"model-{SIZE}.onnx")
    kept = set(int8_layers.float_nodes(onnx_file, openvino_engines.float_scopes(loaded.name)))
    gates = set(nodes_of_modules(onnx_file, (), ("SqueezeExcitation",)))
    head = set(nodes_of_modules(onnx_file, ("model.classifier",)))
    assert gates and head and kept == gates
    quantised_inputs = _quantised_convolutions(engine.details["file"])
    gate_convs, head_convs = _convs_of(quantised_inputs, kept), _convs_of(quantised_inputs, head)
    assert gate_convs and all(name.endswith("/WithoutBiases") for name in gate_convs)  # 1x1 convs with biases
    assert not any(quantised_inputs[name] for name in gate_convs)
    assert head_convs and all(quantised_inputs[name] for name in head_convs)
    assert sum(quantised_inputs.values()) > len(quantised_inputs) // 2  # the trunk is int8


@has_ov
def test_int8_keeps_a_models_own_scopes_in_float(tiny_data):
    """MobileNetV2-LR-ASPP keeps its first three blocks float (its listed scopes); the fourth is int8."""
    from garbseg.inference.runtimes import openvino_engines

    model = random_model("mobilenet_v2-lraspp", ["background", "glass", "metal"], input_size=SIZE)
    assert openvino_engines.float_scopes(model.name) == int8_layers.MOBILENET_STEM
    engine = build_engine(model, "openvino-int8", size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    onnx_file = Path(engine.details["file"]).with_name(f"model-{SIZE}.onnx")
    quantised = _quantised_convolutions(engine.details["file"])
    stem = _convs_of(quantised, set(nodes_of_modules(onnx_file, int8_layers.MOBILENET_STEM)))
    block3 = _convs_of(quantised, set(nodes_of_modules(onnx_file, ("model.backbone.3",))))
    assert len(stem) == 1 + 2 + 3  # the stem, then inverted residuals of 2 and 3 convolutions
    assert not any(quantised[name] for name in stem)
    assert block3 and all(quantised[name] for name in block3)


@has_ort
def test_onnx_int8_keeps_mobilenet_v2s_stem_in_float(tiny_data):
    """ONNX Runtime's int8 file (QDQ): the stem's convolutions read float tensors, the fourth block's
    read dequantised int8 ones."""
    import onnx

    from garbseg.inference.runtimes import ort_engines

    model = random_model("mobilenet_v2-lraspp", ["background", "glass", "metal"], input_size=SIZE)
    engine = build_engine(model, "onnx-int8", size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    quantised_file = Path(engine.details["file"])
    float_file = quantised_file.with_name(f"model-{SIZE}.onnx")
    graph = onnx.load(str(quantised_file)).graph
    dequantised = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    reads_int8 = {n.name: any(i in dequantised for i in n.input) for n in graph.node if n.op_type == "Conv"}
    stem = set(nodes_of_modules(float_file, ort_engines.ORT_FLOAT_SCOPES["mobilenet_v2-lraspp"])) & set(reads_int8)
    block3 = set(nodes_of_modules(float_file, ("model.backbone.3",))) & set(reads_int8)
    assert len(stem) == 1 + 2 + 3 and not any(reads_int8[name] for name in stem)
    assert block3 and all(reads_int8[name] for name in block3)


def test_float_scopes_match_whole_module_paths(tmp_path):
    """A scope names a module and what is inside it: block 1 of a trunk is not block 10 or 11."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    def node(name, scopes):
        n = helper.make_node("Relu", ["x"], [name], name=name)
        n.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=repr(["", *scopes]))
        return n

    nodes = [node("b1", ["model.backbone", "model.backbone.1"]),
             node("b1_inner", ["model.backbone", "model.backbone.1", "model.backbone.1.conv"]),
             node("b10", ["model.backbone", "model.backbone.10"]),
             node("head", ["model.classifier"])]
    value = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = helper.make_graph(nodes, "g", [value], [helper.make_tensor_value_info(n.name, onnx.TensorProto.FLOAT, [1])
                                                   for n in nodes])
    path = tmp_path / "scopes.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert nodes_of_modules(path, ("model.backbone.1",)) == ["b1", "b1_inner"]
    assert nodes_of_modules(path, ("model.backbone",)) == ["b1", "b1_inner", "b10"]
    assert nodes_of_modules(path, ("model.back",)) == []


def test_vnni_is_read_from_the_cpu_flags(monkeypatch):
    from garbseg.core import machine

    for flags, vnni in [("fpu sse avx2 fma", False), ("avx2 avx_vnni", True), ("avx512f avx512_vnni", True),
                        ("amx_bf16 amx_int8", True), ("avx512f avx512bw", False)]:
        monkeypatch.setattr(machine, "_cpu_flags", lambda flags=flags: f"flags\t\t: {flags}")
        assert machine.cpu_supports_vnni() is vnni, flags


def test_int8_weights_take_7_bits_without_vnni_and_are_cached_apart(monkeypatch):
    """Without VNNI an int8 convolution sums products in 16 bits and saturates: the weights get 7 bits, and
    the file and its check are kept apart from an 8-bit build (a cache moved between machines)."""
    from garbseg.inference.runtimes import int8_layers, openvino_engines, ort_engines

    recipes = {}
    for vnni, bits in [(False, 7), (True, 8)]:
        monkeypatch.setattr(int8_layers, "cpu_supports_vnni", lambda vnni=vnni: vnni)
        assert int8_layers.int8_weight_bits() == bits
        recipes[bits] = (openvino_engines.OpenVinoInt8Engine.recipe(), ort_engines.OrtInt8Engine.recipe())
    assert recipes[7][0] != recipes[8][0] and recipes[7][1] != recipes[8][1]


@has_ov
@pytest.mark.skipif(not cpu_supports_bf16(), reason="no native bf16 on this CPU")
def test_int8_bf16_runs_the_int8_file_and_is_checked_like_int8(loaded, tiny_data):
    int8 = build_engine(loaded, "openvino-int8", size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    mixed = build_engine(loaded, "openvino-int8-bf16", size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    assert mixed.details["file"] == int8.details["file"] and mixed.details["precision"] == "bf16"
    result = check_engine(loaded, mixed, data_dir=tiny_data)
    assert result["runtime"] == "openvino-int8-bf16" and "miou_delta" in result
    assert result["passed"] == (result["miou_delta"] >= -0.01)


@has_ov
def test_int8_bf16_without_native_bf16_falls_back_to_int8(loaded, tiny_data, monkeypatch, capsys):
    monkeypatch.setattr("garbseg.inference.runtimes.openvino_engines.cpu_supports_bf16", lambda: False)
    engine = build_engine(loaded, "openvino-int8-bf16", size=SIZE, threads=1, data_dir=tiny_data)
    assert engine.name == "openvino-int8" and engine.details["precision"] == "f32"
    assert "no native bf16" in capsys.readouterr().err


# --- cache ------------------------------------------------------------------------------------------

def test_cache_is_keyed_by_weights_content(loaded, tiny_run):
    same = load_checkpoint(tiny_run)  # another object, same weights: same folder
    assert model_dir(same) == model_dir(loaded)
    changed = load_checkpoint(tiny_run)
    with torch.no_grad():
        next(changed.model.parameters()).add_(0.01)
    assert model_dir(changed) != model_dir(loaded)


@has_ort
def test_changed_weights_are_exported_again(tiny_run, val_images, tiny_data):
    model = load_checkpoint(tiny_run)
    first = build_engine(model, "onnx", size=SIZE, threads=1, fallback=False)
    with torch.no_grad():
        for p in model.model.classifier.parameters():
            p.mul_(-1.0)  # a visibly different model
    second = build_engine(model, "onnx", size=SIZE, threads=1, fallback=False)
    assert first.details["file"] != second.details["file"]
    batch = Predictor(model, SIZE).preprocess(val_images)
    with torch.no_grad():
        eager = head_logits(model.model.eval(), batch)
    assert torch.allclose(second(batch), eager, atol=1e-3)


# --- fallback -------------------------------------------------------------------------------------

def test_missing_onnxruntime_falls_back_with_a_warning(loaded, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    engine = build_engine(loaded, "onnx", size=SIZE, threads=1)
    assert engine.name == "torch-opt"
    assert "onnx runtime unavailable" in capsys.readouterr().err
    x = torch.zeros(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert engine(x).shape == head_logits(loaded.model.eval(), x).shape


def test_missing_openvino_falls_back(loaded, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert build_engine(loaded, "openvino-int8", size=SIZE, threads=1).name == "torch-opt"
    err = capsys.readouterr().err
    assert "openvino-int8 runtime unavailable" in err and "falling back" in err


@has_ort
@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_damaged_cached_onnx_is_exported_again(loaded, val_images, tiny_data, damage):
    build_engine(loaded, "onnx", size=SIZE, threads=1, fallback=False)
    path = onnx_path(type("Ctx", (), {"loaded": loaded, "size": SIZE})())
    if damage == "corrupt":
        path.write_bytes(b"not an onnx file" * 10)
    else:
        path.unlink()
    assert eager_vs("onnx", loaded, val_images, tiny_data) >= PARITY_THRESHOLD
    assert path.is_file() and path.stat().st_size > 10_000


@has_ov
def test_corrupt_openvino_int8_file_is_rebuilt(loaded, tiny_data):
    engine = build_engine(loaded, "openvino-int8", size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    xml = Path(engine.details["file"])
    xml.write_text("<net broken")
    again = build_engine(loaded, "openvino-int8", size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    assert again.name == "openvino-int8" and again(torch.zeros(1, 3, SIZE, SIZE)).shape[1] == len(loaded.classes)


# --- auto -------------------------------------------------------------------------------------------

@has_ort
@has_ov
def test_auto_chooses_once_and_caches_the_choice(loaded, tiny_data, monkeypatch):
    engine = build_engine(loaded, "auto", size=SIZE, threads=1, data_dir=tiny_data)
    choice = json.loads((model_dir(loaded) / f"auto-{SIZE}-t1.json").read_text())
    assert choice["runtime"] == engine.name
    assert all(c.get("usable") is not None for c in choice["candidates"].values())
    import garbseg.inference.runtimes.auto as auto_module

    monkeypatch.setattr(auto_module, "choose", lambda *a, **k: pytest.fail("the cached choice was not used"))
    assert build_engine(loaded, "auto", size=SIZE, threads=1, data_dir=tiny_data).name == engine.name


@has_ort
@has_ov
def test_auto_without_calibration_leaves_int8_out_until_it_is_calibrated(tiny_data, monkeypatch):
    # Random weights at 64 px: every step runs for real (export, checks, NNCF and ORT quantisation) in seconds.
    loaded = random_model("mobilenet_v3_large-lraspp", list(load_dataset(tiny_data, "val").classes), SIZE)
    folder = model_dir(loaded)
    full_file, float_file = folder / f"auto-{SIZE}-t1.json", folder / f"auto-{SIZE}-t1-float.json"

    def auto(calibrate):
        return build_engine(loaded, "auto", size=SIZE, threads=1, data_dir=tiny_data, calibrate=calibrate)

    first = auto(False)
    choice = json.loads(float_file.read_text())
    assert first.name == choice["runtime"]
    assert "onnx" in choice["candidates"] and set(choice["candidates"]).isdisjoint(INT8_RUNTIMES)
    assert not full_file.exists()  # a choice without int8 never stands in for the full one
    assert not list(folder.glob("*int8*"))  # nothing was quantised

    # openvino-int8 calibrated and checked elsewhere (as `bench --runtime openvino-int8` does): now it counts
    int8 = build_engine(loaded, "openvino-int8", size=SIZE, threads=1, data_dir=tiny_data, fallback=False)
    check_engine(loaded, int8, data_dir=tiny_data)
    auto(False)
    choice = json.loads(float_file.read_text())
    assert "openvino-int8" in choice["candidates"] and "onnx-int8" not in choice["candidates"]
    assert not full_file.exists() and not list(folder.glob("*int8*.onnx"))

    # With calibration auto chooses among all; from then on that choice is used without calibration too.
    full = auto(True)
    assert set(INT8_RUNTIMES) <= set(json.loads(full_file.read_text())["candidates"])
    import garbseg.inference.runtimes.auto as auto_module

    monkeypatch.setattr(auto_module, "choose", lambda *a, **k: pytest.fail("the full choice was not used"))
    assert auto(False).name == full.name


# --- CLI ----------------------------------------------------------------------------------------------

@has_ort
def test_cli_bench_rows_carry_runtime_and_speedup(tiny_run, tiny_data, cache_dir):
    env = {**os.environ, "GARBSEG_CACHE": str(cache_dir)}
    result = subprocess.run([sys.executable, "-m", "garbseg", "bench", "--checkpoint", str(tiny_run), "--size",
                             str(SIZE), "--runtime", "torch,onnx", "--runs", "3", "--warmup", "1", "--threads", "1",
                             "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["runtime"], r["resolved_runtime"]) for r in rows] == [("torch", "torch"), ("onnx", "onnx")]
    assert rows[0]["speedup_vs_torch"] == 1.0
    assert rows[1]["speedup_vs_torch"] == pytest.approx(rows[0]["latency_p50_ms"] / rows[1]["latency_p50_ms"], rel=1e-2)
    assert rows[1]["parity_agreement"] >= PARITY_THRESHOLD and rows[1]["parity_passed"] is True


def test_cli_rejects_unknown_runtimes(tiny_run):
    result = subprocess.run([sys.executable, "-m", "garbseg", "bench", "--checkpoint", str(tiny_run),
                             "--runtime", "torch,tensorrt"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "tensorrt" in result.stderr and "Traceback" not in result.stderr

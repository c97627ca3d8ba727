"""ONNX Runtime (CPU provider): ``onnx`` runs the exported float file, ``onnx-int8`` a statically
quantised copy (QDQ, per-channel int8 weights, activation ranges from train images; the layers of
``int8_layers`` kept float, 7-bit weights on CPUs without VNNI)."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .base import ArrayEngine, BuildContext, RuntimeUnavailable, import_optional
from .calibration import calibration_arrays
from .export import export_onnx, is_valid_onnx
from .int8_layers import MOBILENET_STEM, float_nodes, int8_weight_bits

ORT_CALIBRATION_IMAGES = 32  # fewer than OpenVINO: ORT calibrates on the unoptimised graph, slowly
# On the 2-core AMD EPYC without VNNI, with 7-bit weights, the six MobileNet files lost 1.3-8.1 val mIoU
# points with their stems int8 and passed with them float (-0.5 to +0.5; benchmarks/README.md, "Each
# model's own float layers"); ResNet50's pass as they are.
ORT_FLOAT_SCOPES: dict[str, tuple[str, ...]] = {
    name: MOBILENET_STEM for name in ("mobilenet_v2-deeplabv3", "mobilenet_v2-fcn", "mobilenet_v2-lraspp",
                                      "mobilenet_v3_large-deeplabv3", "mobilenet_v3_large-fcn",
                                      "mobilenet_v3_large-lraspp")
}
ORT_INT8_RECIPE = "s2"  # in the cached file name: a new recipe never reuses an old file


class OrtEngine(ArrayEngine):
    name = "onnx"
    fallback = "torch-opt"
    packages = ("onnxruntime",)

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx)
        ort = import_optional("onnxruntime")
        path = self.model_file(ctx)
        try:
            self.session = self._session(ort, path)
        except Exception as exc:  # a file that passed the parse check but does not load: rebuild once
            ctx.log(f"{path.name} did not load ({exc}); rebuilding")
            path = self.model_file(ctx, force=True)
            self.session = self._session(ort, path)
        self.input_name = self.session.get_inputs()[0].name
        self.details = {"file": str(path), "onnxruntime": ort.__version__}

    def model_file(self, ctx: BuildContext, force: bool = False) -> Path:
        return export_onnx(ctx, force=force)

    def _session(self, ort, path: Path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads  # explicit: ORT's default ignores affinity masks
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: no "consider pre-processing" chatter on stderr
        # ORT's threads spin on after each call and take the cores from whatever runs next (another
        # model side by side, pre/post-processing): OpenVINO timed after ORT int8 ran 5.34 ms, 4.03 ms
        # with the spinning stopped after each run, at 3.77 -> 4.12 ms for ORT (benchmarks/README.md).
        opts.add_session_config_entry("session.force_spinning_stop", "1")
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run_one(self, array: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: array})[0]


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    before = root.level
    root.setLevel(max(before, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(before)


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over a list of arrays."""

    def __init__(self, input_name: str, arrays: list[np.ndarray]):
        self._items = iter([{input_name: a} for a in arrays])

    def get_next(self):
        return next(self._items, None)


class OrtInt8Engine(OrtEngine):
    # An auto candidate like every int8 runtime: the val check decides per model. On ResNet50 it was the
    # fastest runtime on an AVX512 Xeon (3.8x eager vs 3.2x for openvino-int8).
    name = "onnx-int8"
    fallback = "onnx"
    int8 = True
    prepare_cost = 3.0  # static quantisation on the unoptimised graph, then the val check

    @classmethod
    def recipe(cls) -> list[str]:
        return [f"calib {ORT_CALIBRATION_IMAGES}", f"recipe {ORT_INT8_RECIPE}", f"weights {int8_weight_bits()} bits"]

    def model_file(self, ctx: BuildContext, force: bool = False) -> Path:
        # Calibration, recipe and weight bits are in the name: a file made differently is never reused.
        bits = int8_weight_bits()
        float_file = export_onnx(ctx)  # validated once (it parses the file), then read twice below
        path = float_file.with_name(f"model-{ctx.size}-int8-c{ORT_CALIBRATION_IMAGES}-{ORT_INT8_RECIPE}-w{bits}.onnx")
        if path.is_file() and not force and is_valid_onnx(path):
            return path
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        kept = float_nodes(float_file, ORT_FLOAT_SCOPES.get(ctx.name, ()))
        ctx.log(f"quantising {ctx.name} at {ctx.size} with onnxruntime (static, per-channel); "
                f"{len(kept)} nodes stay float32; weights in {bits} bits")
        arrays = calibration_arrays(ctx, ORT_CALIBRATION_IMAGES)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
        os.close(fd)
        try:
            with _quiet_root_logger():  # ORT's quantiser warns through the root logger
                quantize_static(str(float_file), tmp, _CalibrationReader("input", arrays),
                                nodes_to_exclude=kept, reduce_range=bits == 7,
                                quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax)
            os.replace(tmp, path)
        except Exception as exc:
            raise RuntimeUnavailable(f"onnxruntime quantisation failed: {exc}") from exc
        finally:
            for leftover in Path(path.parent).glob(f".{path.name}.*"):
                leftover.unlink(missing_ok=True)
        return path

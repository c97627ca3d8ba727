"""OpenVINO (CPU plugin) on the same cached ONNX file.

``openvino`` pins float32 inference precision: on CPUs with native bf16 the plugin would otherwise
silently compute in bf16, which is a different numerical model. ``openvino-bf16`` asks for bf16
explicitly (it must pass the same parity check as every float runtime). ``openvino-int8`` is NNCF
post-training quantisation of the float model, calibrated on train images, saved as IR in the cache;
``openvino-int8-bf16`` runs that file with its float-kept layers in bf16.
All of them compile for batch 1 with the latency hint, one stream and an explicit thread count.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from ...core.machine import cpu_supports_bf16
from .base import ArrayEngine, BuildContext, RuntimeUnavailable, import_optional
from .calibration import CALIBRATION_IMAGES, calibration_arrays
from .export import export_onnx
from .int8_layers import MOBILENET_STEM, float_nodes, int8_weight_bits

# Post-training quantisation with the layers of int8_layers kept float. The MIXED preset quantises
# activations asymmetrically: hard-swish outputs go below zero, and a symmetric range wastes half its
# levels on the ReLU6 ones. Until 2026-12-08 the heads were listed as float too, but only their bias
# additions were (see operations_of_nodes); made float for real they changed no model's check on the
# 2-core AMD EPYC (val mIoU change within 0.12 points of the int8 heads') and made ResNet50's int8 22-31 %
# slower (DeepLabv3 at 224: 43 -> 53 ms), so the heads are int8, except MobileNetV3-DeepLabv3's, whose int8
# file is faster than float32 only with its head float. MobileNetV2-LR-ASPP lost 9.5 points and -FCN 1.2
# with their stems int8, 0.6 and 0.7 with them float; MobileNetV2-DeepLabv3 passes either way (+2.1, -0.3)
# and keeps the faster all-int8 trunk. On CPUs without VNNI the weights get 7 bits; with all this, all
# nine shipped models pass the val check there (benchmarks/README.md, "OpenVINO int8 on a CPU without
# VNNI"). This replaced NNCF's accuracy-controlled search, which ranked every quantiser group with one
# OpenVINO compile each: 4-10 minutes per model. The val check (garbseg.inference.runtimes.checks)
# decides: auto accepts at most 1 point lost.
FLOAT_SCOPES: dict[str, tuple[str, ...]] = {  # model -> module paths kept float, with what is inside them
    "mobilenet_v2-fcn": MOBILENET_STEM,
    "mobilenet_v2-lraspp": MOBILENET_STEM,
    "mobilenet_v3_large-deeplabv3": ("model.classifier",),
}
INT8_PRESET = "MIXED"  # nncf.QuantizationPreset member
INT8_RECIPE = "sm3"  # in the cached file name: a new recipe never reuses an old file


def float_scopes(model_name: str) -> tuple[str, ...]:
    """The module paths of ``model_name`` that openvino-int8 keeps float (besides int8_layers.FLOAT_CLASSES)."""
    return FLOAT_SCOPES.get(model_name, ())


def operations_of_nodes(model, onnx_nodes: set[str]) -> list[str]:
    """The names of the OpenVINO operations made from these ONNX nodes. OpenVINO splits a convolution
    with a bias into ``NODE/WithoutBiases`` (the convolution) and an Add named ``NODE``: naming the node
    alone would leave the convolution itself to be quantised."""
    return [op.get_friendly_name() for op in model.get_ops()
            if op.get_friendly_name().split("/", 1)[0] in onnx_nodes]


def _require_native_bf16() -> None:
    if not cpu_supports_bf16():
        raise RuntimeUnavailable("this CPU has no native bf16 (AVX512-BF16 or AMX)")


class OpenVinoEngine(ArrayEngine):
    name = "openvino"
    fallback = "onnx"
    packages = ("openvino",)
    precision = "f32"

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx)
        if self.precision == "bf16":  # fast only where the CPU computes bf16 natively; else left out
            _require_native_bf16()
        ov = import_optional("openvino")
        self.core = ov.Core()
        try:
            compiled, source = self._compile(ctx, force=False)
        except RuntimeUnavailable:
            raise
        except Exception as exc:  # corrupt cached file: rebuild once from the model
            ctx.log(f"{self.name}: cached model did not load ({exc}); rebuilding")
            compiled, source = self._compile(ctx, force=True)
        self.request = compiled.create_infer_request()
        self.details = {"file": str(source), "openvino": ov.__version__, "precision": self.precision}

    def read_model(self, ctx: BuildContext, force: bool):
        return self.core.read_model(str(export_onnx(ctx, force=force))), export_onnx(ctx)

    def _compile(self, ctx: BuildContext, force: bool):
        model, source = self.read_model(ctx, force)
        model.reshape([1, 3, ctx.size, ctx.size])
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(self.threads),
            "INFERENCE_PRECISION_HINT": self.precision,
        }
        try:
            return self.core.compile_model(model, "CPU", config), source
        except Exception as exc:
            raise RuntimeUnavailable(f"OpenVINO could not compile {ctx.name}: {exc}") from exc

    def run_one(self, array: np.ndarray) -> np.ndarray:
        self.request.infer({0: array}, share_inputs=True)
        return self.request.get_output_tensor(0).data.copy()


class OpenVinoBf16Engine(OpenVinoEngine):
    name = "openvino-bf16"
    fallback = "openvino"
    precision = "bf16"


class OpenVinoInt8Engine(OpenVinoEngine):
    name = "openvino-int8"
    fallback = "openvino"
    int8 = True
    packages = ("openvino", "nncf")
    prepare_cost = 3.0  # NNCF calibration statistics and bias correction, then the val check
    precision = "f32"  # int8 layers run in int8 regardless; the rest stays float32

    @classmethod
    def recipe(cls) -> list[str]:
        return [f"calib {CALIBRATION_IMAGES}", f"recipe {INT8_RECIPE}", f"weights {int8_weight_bits()} bits"]

    def read_model(self, ctx: BuildContext, force: bool):
        xml = export_onnx(ctx).with_name(f"openvino-{ctx.size}-int8-{INT8_RECIPE}-w{int8_weight_bits()}.xml")
        if xml.is_file() and xml.with_suffix(".bin").is_file() and not force:
            return self.core.read_model(str(xml)), xml
        self._quantise(ctx, xml)
        return self.core.read_model(str(xml)), xml

    def _quantise(self, ctx: BuildContext, xml: Path) -> None:
        ov = import_optional("openvino")
        nncf = import_optional("nncf", needed_by="openvino-int8")
        nncf.set_log_level(logging.ERROR)  # its INFO lines go to stdout, which --json output needs clean
        arrays = calibration_arrays(ctx)
        onnx_file = export_onnx(ctx)  # validated once (it parses the file), then read twice below
        float_model = self.core.read_model(str(onnx_file))
        float_model.reshape([1, 3, ctx.size, ctx.size])
        scopes = float_scopes(ctx.name)
        kept = operations_of_nodes(float_model, set(float_nodes(onnx_file, scopes)))
        bits = int8_weight_bits()
        ctx.log(f"quantising {ctx.name} at {ctx.size} with NNCF; {len(kept)} operations stay float32 "
                f"(gates{', ' + ', '.join(scopes) if scopes else ''}); weights in {bits} bits")
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

        overflow = OverflowFix.ENABLE if bits == 7 else OverflowFix.FIRST_LAYER  # NNCF's default: the first layer
        try:
            # NNCF draws progress bars on stdout; keep stdout clean for `--json` output.
            with contextlib.redirect_stdout(sys.stderr):
                quantised = nncf.quantize(
                    float_model, nncf.Dataset(arrays), subset_size=len(arrays),
                    preset=getattr(nncf.QuantizationPreset, INT8_PRESET), fast_bias_correction=True,
                    ignored_scope=nncf.IgnoredScope(names=kept, validate=False) if kept else None,
                    advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow))
        except Exception as exc:
            raise RuntimeUnavailable(f"NNCF quantisation failed: {exc}") from exc
        # Save into a temporary folder, then move .bin before .xml: the .xml's presence marks a complete pair.
        tmp = Path(tempfile.mkdtemp(prefix=".ov-int8-", dir=xml.parent))
        try:
            ov.save_model(quantised, str(tmp / xml.name), compress_to_fp16=False)
            os.replace(tmp / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
            os.replace(tmp / xml.name, xml)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class OpenVinoInt8Bf16Engine(OpenVinoInt8Engine):
    """The same int8 file, its float-kept layers computed in bf16 instead of float32 (trained
    MobileNetV2-LR-ASPP at 224: 6.2 -> 3.9 ms). The val mIoU check decides whether the extra rounding
    is acceptable, as for every int8 runtime."""

    name = "openvino-int8-bf16"
    fallback = "openvino-int8"
    precision = "bf16"
    prepare_cost = 1.0  # reuses openvino-int8's file: compile and the val check only

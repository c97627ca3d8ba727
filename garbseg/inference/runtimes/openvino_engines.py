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
from .export import export_onnx, nodes_of_modules

# Post-training quantisation with a fixed set of layers kept in float32, chosen by where int8 rounding
# costs accuracy and saves little time: the segmentation head(s) (a few cheap convolutions that draw
# the class boundaries) and squeeze-excitation gates (1x1 convolutions on pooled vectors whose
# sigmoid gates multiply whole feature maps). The MIXED preset quantises activations asymmetrically:
# hard-swish outputs go below zero, and a symmetric range wastes half its levels on the ReLU6 ones.
# Measured on the shipped models at 224 (val mIoU change against float32; benchmarks/README.md):
# MobileNetV2-LR-ASPP -0.44 points with the head in float (PERFORMANCE preset), -0.25 with the gates
# and MIXED; MobileNetV3-LR-ASPP -2.45, -2.35, -1.77 along the same steps (rejected by the check;
# auto keeps a float runtime for it). This replaced NNCF's accuracy-controlled search, which
# ranked every quantiser group with one OpenVINO compile each: 4-10 minutes per model for -0.44 on
# MobileNetV2-LR-ASPP. The val check (garbseg.inference.runtimes.checks) decides: auto accepts at
# most 1 point lost.
FLOAT_SCOPES = ("model.classifier", "model.aux_classifier")
FLOAT_CLASSES = ("SqueezeExcitation",)
INT8_PRESET = "MIXED"  # nncf.QuantizationPreset member
INT8_RECIPE = "hsm1"  # in the cached file name: a new recipe never reuses an old file


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
        return [f"calib {CALIBRATION_IMAGES}", f"recipe {INT8_RECIPE}"]

    def read_model(self, ctx: BuildContext, force: bool):
        xml = export_onnx(ctx).with_name(f"openvino-{ctx.size}-int8-{INT8_RECIPE}.xml")
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
        present = {op.get_friendly_name() for op in float_model.get_ops()}
        kept = [name for name in nodes_of_modules(onnx_file, FLOAT_SCOPES, FLOAT_CLASSES) if name in present]
        ctx.log(f"quantising {ctx.name} at {ctx.size} with NNCF; {len(kept)} head and gate operations stay float32")
        try:
            # NNCF draws progress bars on stdout; keep stdout clean for `--json` output.
            with contextlib.redirect_stdout(sys.stderr):
                quantised = nncf.quantize(
                    float_model, nncf.Dataset(arrays), subset_size=len(arrays),
                    preset=getattr(nncf.QuantizationPreset, INT8_PRESET), fast_bias_correction=True,
                    ignored_scope=nncf.IgnoredScope(names=kept, validate=False) if kept else None)
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

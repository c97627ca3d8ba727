"""OpenVINO (CPU plugin) on the same cached ONNX file.

``openvino`` pins float32 inference precision: on CPUs with native bf16 the plugin would otherwise
silently compute in bf16, which is a different numerical model. ``openvino-bf16`` asks for bf16
explicitly (it must pass the same parity check as every float runtime). ``openvino-int8`` is NNCF
post-training quantisation of the float model, calibrated on train images, saved as IR in the cache.
All of them compile for batch 1 with the latency hint, one stream and an explicit thread count.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .base import ArrayEngine, BuildContext, RuntimeUnavailable
from .calibration import calibration_arrays
from .onnx_export import export_onnx


def _import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeUnavailable(f"openvino is not installed ({exc})") from exc
    return openvino


class OpenVinoEngine(ArrayEngine):
    name = "openvino"
    precision = "f32"

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx)
        ov = _import_openvino()
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
    precision = "bf16"

    def __init__(self, ctx: BuildContext):
        from ..train import cpu_supports_bf16

        if not cpu_supports_bf16():
            raise RuntimeUnavailable("this CPU has no native bf16 (AVX512-BF16 or AMX)")
        super().__init__(ctx)


class OpenVinoInt8Engine(OpenVinoEngine):
    name = "openvino-int8"
    precision = "f32"  # int8 layers run in int8 regardless; the rest stays float32

    def read_model(self, ctx: BuildContext, force: bool):
        xml = export_onnx(ctx).with_name(f"openvino-{ctx.size}-int8.xml")
        if xml.is_file() and xml.with_suffix(".bin").is_file() and not force:
            return self.core.read_model(str(xml)), xml
        self._quantise(ctx, xml)
        return self.core.read_model(str(xml)), xml

    def _quantise(self, ctx: BuildContext, xml: Path) -> None:
        ov = _import_openvino()
        try:
            import nncf
        except ImportError as exc:
            raise RuntimeUnavailable(f"openvino-int8 needs nncf ({exc})") from exc
        arrays = calibration_arrays(ctx)
        ctx.log(f"quantising {ctx.name} at {ctx.size} with NNCF")
        float_model = self.core.read_model(str(export_onnx(ctx)))
        float_model.reshape([1, 3, ctx.size, ctx.size])
        try:
            quantised = nncf.quantize(float_model, nncf.Dataset(arrays), subset_size=len(arrays),
                                      preset=nncf.QuantizationPreset.PERFORMANCE, fast_bias_correction=False)
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

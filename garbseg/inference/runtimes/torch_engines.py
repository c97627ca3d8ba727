"""The two PyTorch runtimes: ``torch`` (eager float32, the reference) and ``torch-opt``.

``torch-opt`` traces and freezes the network (folds batch norm, fuses conv + activation through
oneDNN) under inference mode, and on CPUs with native bf16 also tries bf16 autocast in
channels_last. Which variant wins depends on the network: depthwise MobileNets were fastest in
float32 contiguous here, dense ResNets in bf16 channels_last, so both are timed at build time and
the faster kept (recorded in ``details``).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ...core.machine import cpu_supports_bf16
from ...core.timing import median_ms, time_calls
from ...models import head_logits
from .base import BuildContext, Engine


class HeadLogits(nn.Module):
    """The network as a plain tensor function (tracing and export need tensor outputs) that stops at
    the head's logits, before the upsampling to the input size (see ``garbseg.models.registry.head_logits``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return head_logits(self.model, x)


class TorchEngine(Engine):
    name = "torch"  # the reference: never falls back, always passes its check
    prepare_cost = 0.0

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx)
        self.model = ctx.loaded.model.eval()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(batch)["out"]


def _trace(model: nn.Module, size: int, bf16: bool, channels_last: bool):
    wrapper = HeadLogits(model).eval()
    example = torch.zeros(1, 3, size, size)
    if channels_last:
        wrapper = wrapper.to(memory_format=torch.channels_last)
        example = example.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow in torchvision
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
            traced = torch.jit.trace(wrapper, example, check_trace=False)
        frozen = torch.jit.freeze(traced)
    return frozen


class TorchOptEngine(Engine):
    name = "torch-opt"
    fallback = "torch"

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx)
        # The model is copied: channels_last conversion must not change the caller's eager model.
        model = copy.deepcopy(ctx.loaded.model).eval()
        variants = [("fp32", False)] + ([("bf16", True)] if cpu_supports_bf16() else [])
        best = None
        for dtype, channels_last in variants:
            fn = _trace(model, ctx.size, dtype == "bf16", channels_last)
            x = torch.zeros(1, 3, ctx.size, ctx.size)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                ms = median_ms(time_calls(lambda: fn(x), warmup=2, runs=5))
            ctx.log(f"torch-opt {dtype}{' channels_last' if channels_last else ''}: {ms:.1f} ms")
            if best is None or ms < best[0]:
                best = (ms, fn, dtype, channels_last)
        _, self.fn, dtype, self.channels_last = best
        self.details = {"variant": f"jit-frozen {dtype}" + (" channels_last" if self.channels_last else "")}

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.check_input(batch)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.fn(batch).float().contiguous()

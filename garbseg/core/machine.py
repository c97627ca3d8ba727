"""Facts about the machine we run on: processor name, usable cores, native bf16 and int8 arithmetic; and
pinning torch's thread count for a block of work."""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), falling back to ``platform``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_threads() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@lru_cache(maxsize=1)
def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_supports_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is slower."""
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_supports_vnni() -> bool:
    """True where the CPU sums int8 products straight into 32 bits (VNNI: AVX512-VNNI, AVX-VNNI or AMX).
    Without it int8 convolutions pass through a 16-bit sum that saturates: int8 weights need 7 bits there."""
    flags = _cpu_flags()
    return any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


@contextmanager
def torch_threads(n: int | None):
    """Pin torch's intra-op threads for the block, then restore them."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or default_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)

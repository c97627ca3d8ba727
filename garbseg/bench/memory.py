"""What a model on a runtime costs in memory and on disk.

``peak_rss_mb``: the peak resident memory of one model on one runtime, measured in a *forked child
process* so that nothing else loaded in the measuring process (other models, other runtimes, their
arenas, the high-water mark they left) pollutes it. The child resets its peak-RSS mark to what it
holds at the fork (``/proc/self/clear_refs``, Linux), builds the runtime from the cache the parent
just filled (no export, calibration or check runs there), runs a few batch-1 calls, and reports its
peak RSS minus that baseline: what building and running the runtime added (its copy of the weights,
the compiled graph, arenas, activations). The torch runtimes run the weights the parent already
holds, so their bytes (parameters and buffers) are added to the torch rows. A fork costs
milliseconds, not the seconds a fresh interpreter would (importing torch), so every benchmark row can
carry the figure. torch computes on one thread in the child (OpenMP's thread pool does not survive
a fork), so the torch rows leave out per-thread scratch buffers of a second thread. ``None`` where it cannot be measured (no ``fork``, no ``/proc``, a child that fails).

``disk_mb``: the size of the files the runtime keeps in the cache (ONNX file, OpenVINO IR pair);
0 for the eager and traced torch runtimes, which keep nothing on disk.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import torch

from ..core.machine import torch_threads
from ..inference import Predictor
from ..models import LoadedModel

MEMORY_CALLS = 5  # batch-1 calls the child runs after building (activations, arena growth)
MEMORY_TIMEOUT_S = 120
_TORCH_RUNTIMES = ("torch", "torch-opt")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def weights_mb(loaded: LoadedModel) -> float:
    """Bytes of the model's parameters and buffers, in MiB."""
    tensors = list(loaded.model.parameters()) + list(loaded.model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _child(conn, loaded: LoadedModel, runtime: str, size: int, threads: int, data_dir) -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS (the fork's baseline)
        base = _status_kb("VmRSS")
        # torch runs one thread in the child: GNU OpenMP's pool does not survive a fork (a parallel
        # region in the child hangs). ONNX Runtime and OpenVINO keep ``threads``.
        with torch_threads(1):
            predictor = Predictor(loaded, size, runtime=runtime, threads=threads, data_dir=data_dir, calibrate=False)
            x = torch.randn(1, 3, predictor.size, predictor.size)
            for _ in range(MEMORY_CALLS):
                predictor.logits(x)
        conn.send((_status_kb("VmHWM") - base) / 1024)
    except BaseException as exc:  # anything: the parent records None, never crashes
        conn.send(exc.__class__.__name__)
    finally:
        conn.close()


def peak_rss_mb(loaded: LoadedModel, runtime: str, *, size: int, threads: int, data_dir=None) -> float | None:
    """Peak resident memory (MiB) of ``loaded`` on ``runtime`` (a resolved name, not ``auto``), measured in a
    forked child as the module docstring says; ``None`` where it cannot be measured."""
    if "fork" not in multiprocessing.get_all_start_methods() or not Path("/proc/self/clear_refs").exists():
        return None
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, loaded, runtime, size, threads, data_dir), daemon=True)
    child.start()
    send.close()
    try:
        got = receive.recv() if receive.poll(MEMORY_TIMEOUT_S) else None
    except EOFError:
        got = None
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()
    if not isinstance(got, float):
        return None
    if runtime in _TORCH_RUNTIMES:
        got += weights_mb(loaded)
    return round(got, 1)


def disk_mb(details: dict | None) -> float:
    """MiB of the cached files a runtime runs from (``details["file"]``, with an IR's ``.bin``)."""
    file = (details or {}).get("file")
    if not file:
        return 0.0
    path = Path(file)
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    return round(sum(f.stat().st_size for f in files if f.is_file()) / 2**20, 3)

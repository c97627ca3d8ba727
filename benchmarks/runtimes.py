"""Latency of every model on every runtime, with ratios taken in the same run.

For each model and input size: prepare every runtime (export, int8 calibration, check against
eager; all cached), then time each runtime at batch 1 (warm-up, then N runs; median and p95), then
let ``auto`` choose and time it too. Prints one table per size plus the two ratios the issue asks
about: auto's speed-up over eager torch, and auto's p50 over the fastest single runtime's.

Weights: checkpoints/<model>.safetensors when shipped, else (with --runs-dir) a training run's
best.safetensors, read only; else random weights (flagged trained=False: parity on random weights
is a weak test and int8 mIoU changes on them say little).

Usage:
    python benchmarks/runtimes.py [--sizes 224 512] [--models NAME ...] [--runs 20] [--threads N]
                                  [--runs-dir runs] [--pause-pid PID] [--out benchmarks/results/runtimes.json]

--pause-pid stops another process (e.g. a training job) with SIGSTOP during each timed section only
and resumes it (SIGCONT) right after, also on errors, Ctrl-C and SIGTERM; preparation runs while it
works. Before each timed section the script also waits (up to 15 min) until no other process keeps
the CPUs more than 25 % busy, because on a shared 2-core machine anything else running shows up
in the numbers.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from garbseg.bench import bench_model, cpu_name, default_threads, torch_threads, write_results
from garbseg.checkpoints import load_checkpoint, random_model, shipped_checkpoint
from garbseg.data import DEFAULT_DATA_DIR, load_dataset
from garbseg.models import list_models
from garbseg.runtimes import ENGINES, RuntimeUnavailable, build_engine, check_engine

SINGLE_RUNTIMES = list(ENGINES)


def cpu_busy(seconds: float = 0.5) -> float:
    """Share of all CPUs' time spent busy over ``seconds`` (from /proc/stat; 0 where unavailable)."""
    def sample():
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    a = sample()
    time.sleep(seconds)
    b = sample()
    if not a or not b or b[0] == a[0]:
        return 0.0
    return 1.0 - (b[1] - a[1]) / (b[0] - a[0])


QUIET_BUSY = 0.25  # above this, someone else is computing: timings would measure them, not us
QUIET_MAX_WAIT_S = 900


def _resume(pid: int | None) -> None:
    if pid:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@contextmanager
def paused(pid: int | None, *, wait_for_quiet: bool = True):
    """SIGSTOP ``pid`` for the block (SIGCONT afterwards whatever happens), and first wait until no
    other process keeps the CPUs busy, so that the timings are ours."""
    waited = 0.0
    while True:
        if pid:
            os.kill(pid, signal.SIGSTOP)
        busy = cpu_busy() if wait_for_quiet else 0.0
        if busy < QUIET_BUSY or waited >= QUIET_MAX_WAIT_S:
            break
        _resume(pid)
        if waited == 0:
            log(f"CPUs {busy:.0%} busy with other work; waiting for quiet before timing")
        time.sleep(15)
        waited += 15
    if busy >= QUIET_BUSY:
        log(f"warning: timing while the CPUs are {busy:.0%} busy with other work")
    previous = signal.signal(signal.SIGTERM, lambda *_: (_resume(pid), sys.exit(143)))
    try:
        yield
    finally:
        _resume(pid)
        signal.signal(signal.SIGTERM, previous)


def weights_for(name: str, classes: list[str], size: int, runs_dir: Path | None):
    path = shipped_checkpoint(name)
    if path is None and runs_dir is not None and (runs_dir / name / "best.safetensors").is_file():
        path = runs_dir / name / "best.safetensors"
    if path is not None:
        return load_checkpoint(path)
    torch.manual_seed(0)
    return random_model(name, classes, size)


def prepare(loaded, runtimes: list[str], size: int, threads: int) -> dict[str, str]:
    """Build and check every runtime once (fills the cache); returns the reason for each unusable one."""
    problems = {}
    for runtime in runtimes:
        try:
            engine = build_engine(loaded, runtime, size=size, threads=threads, fallback=False, log=log)
            check_engine(loaded, engine, log=log)
        except RuntimeUnavailable as exc:
            problems[runtime] = str(exc)
            log(f"{runtime}: unavailable ({exc})")
    return problems


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[dict], size: int) -> None:
    print(f"\n### {size}x{size}, batch 1, p50 ms (speed-up vs torch eager in the same run)\n")
    runtimes = [r for r in SINGLE_RUNTIMES + ["auto"] if any(row["runtime"] == r for row in rows)]
    print("| model | weights | " + " | ".join(runtimes) + " | auto ran | auto / fastest |")
    print("|" + "---|" * (len(runtimes) + 4))
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["runtime"]: r for r in rows if r["model"] == model}
        cells = []
        for runtime in runtimes:
            row = mine.get(runtime)
            if row is None or row.get("latency_p50_ms") is None:
                cells.append("n/a")
                continue
            flag = "" if row.get("parity_passed", True) else " ✗"
            cells.append(f"{fmt(row['latency_p50_ms'])} ({fmt(row['speedup_vs_torch'], 2)}x){flag}")
        auto = mine.get("auto", {})
        singles = [r["latency_p50_ms"] for k, r in mine.items() if k != "auto" and r.get("latency_p50_ms")
                   and r.get("parity_passed", True)]
        ratio = auto["latency_p50_ms"] / min(singles) if auto.get("latency_p50_ms") and singles else None
        trained = "trained" if next(iter(mine.values()))["trained"] else "random"
        print(f"| {model} | {trained} | " + " | ".join(cells) + f" | {auto.get('resolved_runtime', '-')} | "
              f"{fmt(ratio, 2)} |")
    print("\n✗: failed its check (float: argmax agreement < 99.5 %; int8: mIoU drop > 1 point), so auto skips it.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--runtimes", default=",".join(SINGLE_RUNTIMES), help="comma list of single runtimes")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--runs-dir", type=Path, help="also use <dir>/<model>/best.safetensors (read only)")
    parser.add_argument("--pause-pid", type=int, help="SIGSTOP this process during timed sections")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/runtimes.json"))
    args = parser.parse_args()
    if args.pause_pid:
        atexit.register(_resume, args.pause_pid)  # whatever ends this script, the paused job goes on
    runtimes = [r for r in args.runtimes.split(",") if r]
    classes = list(load_dataset(DEFAULT_DATA_DIR, "val").classes)
    print(f"machine: {cpu_name()}, {args.threads} threads; torch {torch.__version__}; "
          f"batch 1; {args.warmup} warm-up + {args.runs} timed runs per row")
    rows: list[dict] = []
    for size in args.sizes:
        size_rows = []
        for name in args.models:
            loaded = weights_for(name, classes, size, args.runs_dir)
            log(f"{name} at {size} ({'trained: ' + str(loaded.path) if loaded.path else 'random weights'})")
            # Preparing while another job runs: one torch thread avoids OpenMP threads fighting it.
            with torch_threads(1 if args.pause_pid else args.threads):
                problems = prepare(loaded, runtimes, size, args.threads)
            torch_ms = None
            for runtime in runtimes + ["auto"]:
                if runtime in problems:
                    size_rows.append({"model": name, "runtime": runtime, "size": size, "trained": loaded.path is not None,
                                      "error": problems[runtime]})
                    continue
                if runtime == "auto":  # the choice is made (and cached) in its own quiet section
                    with paused(args.pause_pid), torch_threads(args.threads):
                        build_engine(loaded, "auto", size=size, threads=args.threads, log=log)
                with paused(args.pause_pid):
                    row = bench_model(loaded, size=size, threads=args.threads, warmup=args.warmup, runs=args.runs,
                                      runtime=runtime, torch_ms=torch_ms)
                if runtime == "torch":
                    torch_ms = row["latency_p50_ms"]
                log(f"{runtime} -> {row['resolved_runtime']}: p50 {row['latency_p50_ms']:.2f} ms "
                    f"({fmt(row['speedup_vs_torch'], 2)}x)")
                size_rows.append(row)
        print_table(size_rows, size)
        rows += size_rows
    write_results([{k: v for k, v in r.items() if k != "confusion_matrix"} for r in rows], args.out)
    print(f"\nrows written to {args.out}")


if __name__ == "__main__":
    main()

"""Latency of every model on every runtime, with ratios taken in the same run.

For each model and input size: prepare every runtime (export, int8 calibration, check against
eager; all cached), let ``auto`` choose, then time all of them, ``auto`` included, at batch 1 in
several rounds (per round and runtime: warm-up, then a block of calls; samples pooled; median and
p95), so that drifting load hits every runtime alike. Prints one table per size plus the two ratios the issue asks
about: auto's speed-up over eager torch, and auto's p50 over the fastest single runtime's.

Weights: checkpoints/<model>.safetensors when shipped, else (with --runs-dir) a training run's
best.safetensors, read only; else random weights (flagged trained=False: parity on random weights
is a weak test and int8 mIoU changes on them say little).

Usage:
    python benchmarks/runtimes.py [--sizes 224 512] [--models NAME ...] [--runtimes a,b,...] [--no-auto]
                                  [--runs 20] [--threads N] [--runs-dir runs] [--pause-pid PID ...]
                                  [--out benchmarks/results/runtimes.json]

--pause-pid stops other processes (e.g. a training job) with SIGSTOP during each timed section only
and resumes it (SIGCONT) right after, also on errors, Ctrl-C and SIGTERM; preparation runs while it
works. Before each timed section the script also waits (up to 15 min) until no other process keeps
the CPUs more than 25 % busy, because on a shared 2-core machine anything else running shows up
in the numbers.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from garbseg.bench import bench_runtimes, write_results
from garbseg.core.machine import cpu_name, default_threads, torch_threads
from garbseg.core.paths import default_data_dir
from garbseg.data import load_dataset
from garbseg.models import list_models, open_model
from garbseg.inference.runtimes import ENGINES, RuntimeUnavailable, build_engine, check_engine

SINGLE_RUNTIMES = list(ENGINES)


def cpu_busy(seconds: float = 0.5) -> float:
    """Share of all CPUs' time spent busy over ``seconds`` (from /proc/stat; 0 where unavailable)."""
    def sample():
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        # Niced work (field 2) counts as idle: at nice 19 it gets ~1.5 % of a CPU next to our timing.
        return sum(fields), fields[1] + fields[3] + fields[4]  # total, nice + idle + iowait

    a = sample()
    time.sleep(seconds)
    b = sample()
    if not a or not b or b[0] == a[0]:
        return 0.0
    return 1.0 - (b[1] - a[1]) / (b[0] - a[0])


QUIET_BUSY = 0.25  # above this, someone else is computing: timings would measure them, not us
QUIET_MAX_WAIT_S = 900


def _resume(pids) -> None:
    for pid in pids or ():
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def _stop(pids) -> list[int]:
    alive = []
    for pid in pids or ():
        try:
            os.kill(pid, signal.SIGSTOP)
            alive.append(pid)
        except ProcessLookupError:  # ended (or restarted under another pid): nothing to pause
            pass
    return alive


@contextmanager
def paused(pids, *, wait_for_quiet: bool = True):
    """SIGSTOP ``pids`` for the block (SIGCONT afterwards whatever happens), and first wait until no
    other process keeps the CPUs busy, so that the timings are ours."""
    waited, stopped = 0.0, []
    while True:
        stopped = _stop(pids)
        busy = cpu_busy() if wait_for_quiet else 0.0
        if busy < QUIET_BUSY or waited >= QUIET_MAX_WAIT_S:
            break
        _resume(stopped)
        if waited == 0:
            log(f"CPUs {busy:.0%} busy with other work; waiting for quiet before timing")
        time.sleep(15)
        waited += 15
    if busy >= QUIET_BUSY:
        log(f"warning: timing while the CPUs are {busy:.0%} busy with other work")
    previous = signal.signal(signal.SIGTERM, lambda *_: (_resume(stopped), sys.exit(143)))
    try:
        yield
    finally:
        _resume(stopped)
        signal.signal(signal.SIGTERM, previous)


def weights_for(name: str, classes: list[str], size: int, runs_dir: Path | None):
    """A run's best file under ``runs_dir`` where there is one, else what ``open_model`` gives for the name."""
    run = runs_dir / name / "best.safetensors" if runs_dir is not None else None
    torch.manual_seed(0)  # random weights, where nothing ships, are the same in every run
    return open_model(run if run is not None and run.is_file() else name, classes, input_size=size)


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
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before each block")
    parser.add_argument("--passes", type=int, default=4, help="rounds over all runtimes; samples are pooled")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--runs-dir", type=Path, help="also use <dir>/<model>/best.safetensors (read only)")
    parser.add_argument("--pause-pid", type=int, nargs="+", help="SIGSTOP these processes during timed sections")
    parser.add_argument("--prepare-only", action="store_true",
                        help="only export, quantise and check (fill the cache, e.g. under `nice -n 19` while "
                             "another size is being timed); no timing")
    parser.add_argument("--no-auto", action="store_true",
                        help="time the single runtimes only (auto would also calibrate the int8 runtimes left "
                             "out of --runtimes)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/runtimes.json"))
    args = parser.parse_args()
    if args.pause_pid:
        atexit.register(_resume, args.pause_pid)  # whatever ends this script, the paused jobs go on
    runtimes = [r for r in args.runtimes.split(",") if r]
    classes = list(load_dataset(default_data_dir(), "val").classes)
    print(f"machine: {cpu_name()}, {args.threads} threads; torch {torch.__version__}; "
          f"batch 1; {args.runs} timed runs per row in {args.passes} rounds, {args.warmup} warm-up calls per block")
    rows: list[dict] = []
    for size in args.sizes:
        size_rows = []
        for name in args.models:
            loaded = weights_for(name, classes, size, args.runs_dir)
            log(f"{name} at {size} ({'trained: ' + str(loaded.path) if loaded.path else 'random weights'})")
            # Preparing while another job runs: one torch thread avoids OpenMP threads fighting it.
            with torch_threads(1 if args.pause_pid else args.threads):
                problems = prepare(loaded, runtimes, size, args.threads)
            if args.prepare_only:
                continue
            usable = [r for r in runtimes if r not in problems] + ([] if args.no_auto else ["auto"])
            rows_here = bench_runtimes(loaded, usable, size=size, threads=args.threads, warmup=args.warmup,
                                       runs=args.runs, passes=args.passes, section=lambda: paused(args.pause_pid),
                                       log=log)
            for row in rows_here:
                log(f"{row['runtime']} -> {row['resolved_runtime']}: p50 {row['latency_p50_ms']:.2f} ms "
                    f"({fmt(row['speedup_vs_torch'], 2)}x)")
            size_rows += rows_here
            size_rows += [{"model": name, "runtime": r, "size": size, "trained": loaded.path is not None,
                           "error": problems[r]} for r in runtimes if r in problems]
        print_table(size_rows, size)
        rows += size_rows
    write_results([{k: v for k, v in r.items() if k != "confusion_matrix"} for r in rows], args.out)
    print(f"\nrows written to {args.out}")


if __name__ == "__main__":
    main()

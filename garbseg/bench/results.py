"""Benchmark results that outlive one app session: merged by measurement key, saved as JSON.

A new row replaces an older one with the same model, runtime, input size, threads and data set, so
re-running a benchmark updates it instead of piling up duplicates.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..core.files import atomic_write
from ..core.paths import cache_root
from .measure import write_results

RESULTS_FILE = "bench_results.json"
KEY_FIELDS = ("model", "runtime", "size", "threads", "dataset", "num_images")


def results_path(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or cache_root()) / RESULTS_FILE


def row_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in KEY_FIELDS)


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with rows sharing a key with ``new`` replaced, then the rest of ``new`` appended."""
    replaced = {row_key(r): r for r in new}
    merged = [replaced.pop(row_key(r), r) for r in old]
    return merged + [r for r in new if row_key(r) in replaced]


def load_results(path: str | Path) -> list[dict]:
    """Saved rows, or [] when the file is missing or unreadable (a cache must never break the app)."""
    try:
        rows = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict) and "model" in r] if isinstance(rows, list) else []


def save_results(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(rows, indent=1)))
    return path


def export_bytes(rows: list[dict], suffix: str) -> bytes:
    """The rows as ``write_results`` writes them (``.csv`` or ``.json``), for a download."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_results(rows, Path(tmp) / f"results{suffix}").read_bytes()

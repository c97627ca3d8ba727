"""Benchmark results that outlive one app session: one SQLite row per measurement, owned by a session.

Each row carries its measurement key (model, runtime, input size, threads, data set, images) and the
session that measured it. A session's new row replaces that session's older row with the same key
(re-running a benchmark updates it); other sessions' rows are never touched unless asked for. Every
write is one short transaction (WAL mode, a busy timeout), so concurrent writers, threads or
processes, never lose a row.

Where: ``$GARBSEG_RESULTS_DB`` (a path or a ``sqlite:///path`` URL), else ``results.sqlite`` in the
cache root. Other URLs (``postgresql://...``) are meant for a team server and need a driver garbseg
does not ship; they are refused with a message. The old shared ``bench_results.json`` beside the
database is imported once, as shared history, then renamed ``bench_results.json.migrated``.

A damaged database is moved aside (``*.corrupt-<time>``) and rebuilt, with one warning; a stored row
with a bad value is left out (or its value dropped) with a message, never an exception.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import tempfile
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import GarbsegError
from ..core.paths import cache_root
from .measure import write_results

RESULTS_FILE = "bench_results.json"  # the JSON file of earlier versions, migrated once
DB_FILE = "results.sqlite"
DB_ENV = "GARBSEG_RESULTS_DB"
KEY_FIELDS = ("model", "runtime", "size", "threads", "dataset", "num_images")
SHARED = "shared"  # the owner of migrated rows: history that belongs to no live session
_TIMEOUT_S = 30.0
_log = logging.getLogger(__name__)

# Values a row must have to be drawn, and the type each scalar must have when present.
_FLOATS = ("gflops", "size_mb", "latency_p50_ms", "latency_p95_ms", "latency_mean_ms", "fps", "miou",
           "precision", "recall", "pixel_accuracy", "speedup_vs_torch", "preprocess_ms")
_INTS = ("size", "threads", "num_images", "params")
_REQUIRED = ("model", "latency_p50_ms")


class ResultsError(GarbsegError):
    """The results database cannot be used (a bad setting, an unwritable place)."""


def results_path(cache_dir: str | Path | None = None) -> Path:
    """The old JSON results file (read once for migration)."""
    return Path(cache_dir or cache_root()) / RESULTS_FILE


def database_path(setting: str | None = None) -> Path:
    """The SQLite file named by ``setting`` (default ``$GARBSEG_RESULTS_DB``, else the cache root's)."""
    value = (setting if setting is not None else os.environ.get(DB_ENV, "")).strip()
    if not value:
        return cache_root() / DB_FILE
    if value.startswith("sqlite:///"):
        return Path(value[len("sqlite:///"):] or DB_FILE)
    if "://" in value:
        scheme = value.split("://", 1)[0]
        raise ResultsError(f"{DB_ENV}: a {scheme}:// database needs a server driver garbseg does not ship; "
                           "use a file path or sqlite:///path")
    return Path(value)


def row_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in KEY_FIELDS)


def _key_text(row: dict) -> str:
    return json.dumps(row_key(row), default=str)


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with rows sharing a key with ``new`` replaced, then the rest of ``new`` appended."""
    replaced = {row_key(r): r for r in new}
    merged = [replaced.pop(row_key(r), r) for r in old]
    return merged + [r for r in new if row_key(r) in replaced]


def _number(value, kind):
    if isinstance(value, bool):
        raise ValueError
    number = kind(value)
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError
    return number


def validate_row(row) -> tuple[dict | None, list[str]]:
    """A row safe to tabulate and chart, and what was wrong with it: a row without a model or a usable
    latency is left out (None); another bad scalar is dropped from the row."""
    if not isinstance(row, dict):
        return None, [f"a stored result is not a row ({type(row).__name__}); left out"]
    name = row.get("model")
    if not isinstance(name, str) or not name:
        return None, ["a stored result has no model name; left out"]
    clean, problems = dict(row), []
    for column, kind in [(c, float) for c in _FLOATS] + [(c, int) for c in _INTS]:
        if clean.get(column) is None:
            continue
        try:
            clean[column] = _number(clean[column], kind)
        except (TypeError, ValueError, OverflowError):
            if column in _REQUIRED:
                return None, [f"stored result of {name}: {column}={row[column]!r} is not a number; left out"]
            problems.append(f"stored result of {name}: {column}={row[column]!r} is not a number; dropped")
            clean[column] = None
    if clean.get("latency_p50_ms") is None:
        return None, [f"stored result of {name} has no latency; left out"]
    samples = clean.get("latency_samples_ms")
    if samples is not None and not (isinstance(samples, list)
                                    and all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in samples)):
        problems.append(f"stored result of {name}: latency_samples_ms is not a list of numbers; dropped")
        clean["latency_samples_ms"] = None
    per_class = clean.get("per_class_iou")
    if per_class is not None and not (isinstance(per_class, dict) and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in per_class.values())):
        problems.append(f"stored result of {name}: per_class_iou is not a table of numbers; dropped")
        clean["per_class_iou"] = clean["confusion_matrix"] = None
    matrix = clean.get("confusion_matrix")
    if matrix is not None and not (isinstance(matrix, list) and all(isinstance(r, list) for r in matrix)):
        problems.append(f"stored result of {name}: confusion_matrix is not a matrix; dropped")
        clean["confusion_matrix"] = None
    return clean, problems


def validate_rows(rows) -> tuple[list[dict], list[str]]:
    good, problems = [], []
    for row in rows if isinstance(rows, list) else []:
        clean, issues = validate_row(row)
        problems += issues
        if clean is not None:
            good.append(clean)
    return good, problems


@dataclass
class ResultsStore:
    """The results database at ``path``; safe to share between threads and processes."""

    path: Path
    notices: list[str] = field(default_factory=list)  # problems found while opening, to report once
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ready: bool = field(default=False, repr=False)

    @classmethod
    def open(cls, setting: str | None = None) -> "ResultsStore":
        store = cls(database_path(setting))
        store._prepare()
        return store

    # -- connections

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=_TIMEOUT_S, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(_TIMEOUT_S * 1000)}")
        return con

    @contextmanager
    def _write(self):
        """One immediate transaction: writers queue on the database lock instead of failing."""
        self._prepare()
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _prepare(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ResultsError(f"cannot create the results folder {self.path.parent}: {exc}") from exc
            try:
                self._create()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise ResultsError(f"the results database {self.path} stays locked: {exc}") from exc
                self._set_aside(exc)
                try:
                    self._create()
                except sqlite3.DatabaseError as again:
                    raise ResultsError(f"cannot create the results database {self.path}: {again}") from again
            self._migrate_json()
            self._ready = True

    def _create(self) -> None:
        with closing(self._connect()) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                        "session TEXT NOT NULL, key TEXT NOT NULL, created REAL NOT NULL, row TEXT NOT NULL)")
            con.execute("CREATE INDEX IF NOT EXISTS results_session ON results (session, key)")
            check = con.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check[0] if check else 'no answer'}")

    def _set_aside(self, exc: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                try:
                    os.replace(part, Path(f"{aside}{suffix}"))
                except OSError:
                    part.unlink(missing_ok=True)
        message = (f"The results database {self.path.name} was damaged ({exc}); it was set aside as "
                   f"{aside.name} and a new one started.")
        _log.warning(message)
        self.notices.append(message)

    def _migrate_json(self) -> None:
        legacy = self.path.parent / RESULTS_FILE
        if not legacy.is_file():
            return
        try:
            rows = json.loads(legacy.read_text())
        except (OSError, ValueError) as exc:
            rows, problems = [], [f"{RESULTS_FILE} could not be read ({exc.__class__.__name__}); nothing imported"]
        else:
            rows, problems = validate_rows(rows)
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            if not legacy.is_file():  # another process migrated it while this one waited
                con.execute("ROLLBACK")
                return
            con.executemany("INSERT INTO results (session, key, created, row) VALUES (?, ?, ?, ?)",
                            [(SHARED, _key_text(r), time.time(), json.dumps(r)) for r in rows])
            try:
                os.replace(legacy, legacy.with_name(RESULTS_FILE + ".migrated"))
            except OSError:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        self.notices += problems
        if rows:
            self.notices.append(f"Imported {len(rows)} earlier result(s) from {RESULTS_FILE} as shared history.")

    # -- the rows

    def add(self, rows: list[dict], session: str) -> None:
        """Store ``rows`` as ``session``'s; each replaces that session's older row with its key."""
        records = [(session, _key_text(r), time.time(), json.dumps(r, default=str)) for r in rows]
        try:
            with self._write() as con:
                for record in records:
                    con.execute("DELETE FROM results WHERE session = ? AND key = ?", record[:2])
                con.executemany("INSERT INTO results (session, key, created, row) VALUES (?, ?, ?, ?)", records)
        except sqlite3.DatabaseError as exc:
            raise ResultsError(f"cannot save results to {self.path}: {exc}") from exc

    def rows(self, session: str | None = None) -> tuple[list[dict], list[str]]:
        """``session``'s rows (None: everyone's) in the order measured, and problems with stored rows."""
        self._prepare()
        query, args = "SELECT row, session FROM results", ()
        if session is not None:
            query, args = query + " WHERE session = ?", (session,)
        try:
            with closing(self._connect()) as con:
                stored = con.execute(query + " ORDER BY id", args).fetchall()
        except sqlite3.DatabaseError as exc:
            self._ready = False  # damaged since it was opened: check, set aside and rebuild next time
            return [], [f"cannot read results from {self.path.name}: {exc}"]
        rows, problems = [], []
        for text, _owner in stored:
            try:
                row = json.loads(text)
            except ValueError:
                problems.append("a stored result is not valid JSON; left out")
                continue
            clean, issues = validate_row(row)
            problems += issues
            if clean is not None:
                rows.append(clean)
        return rows, problems

    def clear(self, session: str | None = None) -> int:
        """Delete ``session``'s rows (None: everyone's); how many went."""
        try:
            with self._write() as con:
                if session is None:
                    return con.execute("DELETE FROM results").rowcount
                return con.execute("DELETE FROM results WHERE session = ?", (session,)).rowcount
        except sqlite3.DatabaseError as exc:
            raise ResultsError(f"cannot clear results in {self.path}: {exc}") from exc

    def take_notices(self) -> list[str]:
        """Problems found while opening, handed out once."""
        with self._lock:
            notices, self.notices = self.notices, []
        return notices


def export_bytes(rows: list[dict], suffix: str) -> bytes:
    """The rows as ``write_results`` writes them (``.csv`` or ``.json``), for a download."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_results(rows, Path(tmp) / f"results{suffix}").read_bytes()

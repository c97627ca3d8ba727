"""garbseg.bench.results: the SQLite results store shared by sessions, threads and processes."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading

import pytest

from garbseg.bench.results import (RESULTS_FILE, SHARED, ResultsError, ResultsStore, database_path, merge_rows,
                                   validate_row)


def row(model="m", size=224, **extra) -> dict:
    return {"model": model, "runtime": "torch", "size": size, "threads": 1, "dataset": None, "num_images": None,
            "latency_p50_ms": 10.0, "latency_p95_ms": 12.0, "fps": 100.0, **extra}


def test_database_setting_takes_a_path_or_a_sqlite_url_and_refuses_other_servers(tmp_path, monkeypatch):
    monkeypatch.setenv("GARBSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GARBSEG_RESULTS_DB", raising=False)
    assert database_path() == tmp_path / "cache" / "results.sqlite"
    monkeypatch.setenv("GARBSEG_RESULTS_DB", f"sqlite:///{tmp_path}/team.db")
    assert database_path() == tmp_path / "team.db"
    monkeypatch.setenv("GARBSEG_RESULTS_DB", str(tmp_path / "plain.db"))
    assert database_path() == tmp_path / "plain.db"
    with pytest.raises(ResultsError, match="postgresql:// database needs a server driver"):
        database_path("postgresql://db.example/garbseg")


def test_sessions_own_their_rows_and_clear_only_their_own(tmp_path):
    store = ResultsStore.open(str(tmp_path / "r.db"))
    store.add([row("a"), row("b")], "alice")
    store.add([row("a", fps=5.0)], "bob")
    store.add([row("a", fps=7.0)], "alice")  # same key: replaces alice's own row, not bob's
    alice, problems = store.rows("alice")
    assert not problems and [(r["model"], r["fps"]) for r in alice] == [("b", 100.0), ("a", 7.0)]
    assert [r["fps"] for r in store.rows("bob")[0]] == [5.0]
    assert len(store.rows()[0]) == 3
    assert store.clear("alice") == 2
    assert store.rows("alice")[0] == [] and len(store.rows("bob")[0]) == 1
    assert store.clear() == 1 and store.rows()[0] == []


def test_many_writer_threads_lose_no_row(tmp_path):
    path = str(tmp_path / "r.db")
    errors = []

    def writer(i):
        try:
            store = ResultsStore.open(path)  # each thread its own store object: as separate processes would
            for k in range(10):
                store.add([row(f"m{k}")], f"s{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(ResultsStore.open(path).rows()[0]) == 160


def _process_writer(path: str, i: int) -> None:
    store = ResultsStore.open(path)
    for k in range(15):
        store.add([row(f"m{k}", size=100 + k)], f"p{i}")


def test_many_writer_processes_lose_no_row(tmp_path):
    path = str(tmp_path / "r.db")
    ctx = multiprocessing.get_context("fork")  # the store only: no torch work in the children
    procs = [ctx.Process(target=_process_writer, args=(path, i)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 6
    rows = ResultsStore.open(path).rows()[0]
    assert len(rows) == 90
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT COUNT(DISTINCT session) FROM results").fetchone()[0] == 6


def test_the_old_json_file_is_migrated_once_as_shared_history(tmp_path):
    legacy = tmp_path / RESULTS_FILE
    legacy.write_text(json.dumps([row("old1"), row("old2"), {"no_model": 1}]))
    store = ResultsStore.open(str(tmp_path / "results.sqlite"))
    assert [r["model"] for r in store.rows()[0]] == ["old1", "old2"]
    assert store.rows("someone")[0] == []
    assert not legacy.exists() and (tmp_path / (RESULTS_FILE + ".migrated")).is_file()
    notices = store.take_notices()
    assert any("Imported 2 earlier result(s)" in n for n in notices)
    assert any("no model name" in n for n in notices)
    assert store.take_notices() == []  # reported once
    again = ResultsStore.open(str(tmp_path / "results.sqlite"))
    assert len(again.rows()[0]) == 2 and again.rows()[0][0]["model"] == "old1"
    with sqlite3.connect(tmp_path / "results.sqlite") as con:
        assert {s for (s,) in con.execute("SELECT session FROM results")} == {SHARED}


@pytest.mark.parametrize("damage", [b"random bytes, not a database" * 50, b"SQLite format 3\x00" + b"\xff" * 5000],
                         ids=["random-bytes", "garbled-after-header"])
def test_a_garbled_database_is_set_aside_reported_once_and_rebuilt(tmp_path, damage):
    path = tmp_path / "results.sqlite"
    path.write_bytes(damage)
    store = ResultsStore.open(str(path))
    notices = store.take_notices()
    assert len(notices) == 1 and "was damaged" in notices[0] and "set aside" in notices[0]
    assert [p.name for p in tmp_path.glob("results.sqlite.corrupt-*")]
    store.add([row()], "s")
    assert len(store.rows("s")[0]) == 1


def test_a_database_truncated_after_use_is_rebuilt_on_next_open(tmp_path):
    path = tmp_path / "results.sqlite"
    store = ResultsStore.open(str(path))
    store.add([row(f"m{i}", extra="x" * 2000) for i in range(50)], "s")
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    fresh = ResultsStore.open(str(path))
    rows, problems = fresh.rows("s")
    assert isinstance(rows, list)  # never an exception
    fresh.add([row()], "t")
    assert len(fresh.rows("t")[0]) == 1


def test_bad_values_in_stored_rows_are_dropped_or_left_out_with_a_message(tmp_path):
    path = tmp_path / "results.sqlite"
    store = ResultsStore.open(str(path))
    store.add([row("good")], "s")
    with sqlite3.connect(path) as con:
        for text in [json.dumps(row("fast", latency_p50_ms="fast")), json.dumps(row("nanfps", fps="NaN")),
                     "{not json", json.dumps([1, 2]), json.dumps(row("samples", latency_samples_ms="x"))]:
            con.execute("INSERT INTO results (session, key, created, row) VALUES ('s', 'k', 0, ?)", (text,))
    rows, problems = store.rows("s")
    assert [r["model"] for r in rows] == ["good", "nanfps", "samples"]
    assert rows[1]["fps"] is None and rows[2]["latency_samples_ms"] is None
    assert any("latency_p50_ms='fast' is not a number; left out" in p for p in problems)
    assert any("fps='NaN' is not a number; dropped" in p for p in problems)
    assert any("not valid JSON" in p for p in problems) and any("not a row" in p for p in problems)
    assert validate_row(row(size="224"))[0]["size"] == 224  # numbers written as text are coerced


def test_merge_rows_still_merges_by_key():
    assert merge_rows([row("a")], [row("a", fps=1.0), row("b")]) == [row("a", fps=1.0), row("b")]

"""The in-process read cache (`workbench.catalog.read_cache`) on real catalogs and real processes.

A cached answer must be reused only while the catalog is unchanged: never a stale read after a
write by this process (any thread) or by another one, and no file lock kept between calls.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import duckdb
import pandas as pd
import pytest

from workbench.catalog import connection, read_cache, transaction
from workbench.catalog.read_cache import CACHE
from workbench.runs.ingest import index_runs
from workbench.runs.lifecycle import create_run
from workbench.runs.query import experiments_summary, run_details, runs


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch):
    """An empty cache that trusts tokens at once: a test's catalog was written a moment ago, and
    waiting out the 2 s racy window in every test would only make the suite slower (the window
    has a test of its own)."""
    CACHE.clear()
    monkeypatch.setattr(CACHE, "racy_window_s", 0.0)
    monkeypatch.delenv(read_cache.ENV_SWITCH, raising=False)
    yield
    CACHE.clear()


@pytest.fixture()
def opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every catalog file this process opens from now on."""
    seen: list[str] = []
    real = connection._open_with_retry

    def counting(path: str) -> duckdb.DuckDBPyConnection:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(connection, "_open_with_retry", counting)
    return seen


def _finished_run(ws, experiment: str = "cache", **params) -> str:
    """A finished run, indexed into the catalog by this process (as the runner does at a run's end)."""
    record = create_run(ws, experiment=experiment, kind="notebook", params=params)
    record.writer.emit("metric", key="acc", value=0.5, step=0, at=None)
    record.end("finished")
    index_runs(ws, [record.run_id])
    return record.run_id


def _python(code: str, *args: str) -> str:
    """Run `code` in a fresh interpreter (a real second process); its stdout."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# ------------------------------------------------------------------------------------------
# Hits


def test_hit_returns_equal_data_without_opening_the_catalog(ws, opens) -> None:
    for depth in range(3):
        _finished_run(ws, depth=depth)
    first = runs(order_by="params.depth", ws=ws)
    opened = len(opens)
    start = time.perf_counter()
    again = runs(order_by="params.depth", ws=ws)
    elapsed = time.perf_counter() - start
    pd.testing.assert_frame_equal(again, first)
    assert len(opens) == opened  # answered from memory
    assert CACHE.stats()["hits"] == 1
    assert elapsed < 0.05  # a copy of a 3-row frame; a catalog read is ~10 ms for the open alone
    assert list(again["params.depth"]) == [0, 1, 2]


def test_answers_are_private_copies(ws) -> None:
    _finished_run(ws, depth=1, layers=[8, 4])
    first = runs(ws=ws)
    first.loc[0, "params.depth"] = 99
    first["extra"] = 1
    first.loc[0, "params.layers"].append(2)  # a list cell: pandas' deep copy shares it
    again = runs(ws=ws)
    assert again.loc[0, "params.depth"] == 1 and "extra" not in again
    assert again.loc[0, "params.layers"] == [8, 4]
    again.loc[0, "params.layers"].append(1)
    assert runs(ws=ws).loc[0, "params.layers"] == [8, 4]
    summary = experiments_summary(ws=ws)
    summary[0]["runs"] = 1000
    assert experiments_summary(ws=ws)[0]["runs"] == 1
    assert CACHE.stats()["hits"] == 3


def test_equal_arguments_share_an_entry_and_different_ones_do_not(ws) -> None:
    run_id = _finished_run(ws, depth=1)
    runs(experiment=["cache", "other"], limit=5, ws=ws)
    runs(experiment=("cache", "other"), limit=5, ws=ws)  # same values: same key
    runs(experiment=["cache", "other"], limit=6, ws=ws)
    assert CACHE.stats()["hits"] == 1 and CACHE.stats()["misses"] == 2
    assert len({read_cache._freeze(v) for v in (1, 1.0, True, "1")}) == 4  # equal in Python, not as questions
    ids = pd.Series([run_id])
    assert run_details(ids, ws) == run_details([run_id], ws)  # a Series and a list of the same ids
    assert CACHE.stats()["hits"] == 2


# ------------------------------------------------------------------------------------------
# Writes make the next read fresh


def test_write_in_this_process_is_seen_by_the_next_read(ws) -> None:
    _finished_run(ws, depth=1)
    assert len(runs(ws=ws)) == 1
    assert len(runs(ws=ws)) == 1 and CACHE.stats()["hits"] == 1
    _finished_run(ws, depth=2)
    assert sorted(runs(ws=ws)["params.depth"]) == [1, 2]
    assert [e["runs"] for e in experiments_summary(ws=ws)] == [2]


def test_own_writes_are_seen_even_when_the_files_look_unchanged(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write generation alone catches this process's writes: here file timestamps and sizes
    are frozen, as a second write within one timestamp tick can leave them."""
    _finished_run(ws, depth=1)
    monkeypatch.setattr(read_cache, "_file_state", lambda path: (1, 2, 3, 4, 5) if path.endswith(".duckdb") else None)
    assert len(runs(ws=ws)) == 1
    with transaction(ws) as con:
        con.execute("UPDATE run_params SET value = '7', value_num = 7, value_text = '7' WHERE key = 'depth'")
    assert list(runs(ws=ws)["params.depth"]) == [7]


def test_write_by_another_process_is_seen_by_the_next_read(ws, opens) -> None:
    _finished_run(ws, depth=1)
    assert len(runs(ws=ws)) == 1
    runs(ws=ws)
    assert CACHE.stats()["hits"] == 1
    other = _python(
        """
        import sys
        from workbench.runs.ingest import index_runs
        from workbench.runs.lifecycle import create_run
        from workbench.workspace import open_workspace

        ws = open_workspace(sys.argv[1])
        record = create_run(ws, experiment="other", kind="notebook", params={"depth": 2})
        record.end("finished")
        index_runs(ws, [record.run_id])  # the catalog is written by this process, as a runner does
        print(record.run_id)
        """,
        str(ws.root),
    )
    assert not read_cache.runs_pending(ws)  # nothing left for this process to index: the catalog changed
    frame = runs(ws=ws)
    assert other in set(frame["run_id"]) and len(frame) == 2
    assert {e["name"] for e in experiments_summary(ws=ws)} == {"cache", "other"}


def test_run_started_by_another_process_is_seen_by_the_next_read(ws) -> None:
    """A run that has not reached the catalog yet (only its events and pending marker exist)."""
    _finished_run(ws, depth=1)
    runs(ws=ws)
    other = _python(
        """
        import sys
        from workbench.runs.lifecycle import create_run
        from workbench.workspace import open_workspace

        record = create_run(open_workspace(sys.argv[1]), experiment="cache", kind="notebook")
        record.writer.flush()
        print(record.run_id)
        """,
        str(ws.root),
    )
    frame = runs(ws=ws)
    assert other in set(frame["run_id"])


def test_uncommitted_writes_are_never_cached(ws) -> None:
    """A read inside a transaction sees that transaction's rows; if it rolls back, nobody may."""
    _finished_run(ws, depth=1)
    runs(ws=ws)
    with pytest.raises(RuntimeError), transaction(ws) as con:
        con.execute("INSERT INTO runs (run_id, experiment, kind, status, created_at) VALUES "
                    "('20240101-000000-0000dead', 'cache', 'notebook', 'finished', now())")  # fmt: skip
        assert len(runs(ws=ws)) == 2  # its own uncommitted row
        raise RuntimeError("roll back")
    assert len(runs(ws=ws)) == 1


def test_checkpoint_and_catalog_swap_are_seen(ws) -> None:
    """Another process rewriting the catalog file in place, and replacing it: both change the token."""
    _finished_run(ws, depth=1)
    runs(ws=ws)
    _python(
        """
        import sys, duckdb
        con = duckdb.connect(sys.argv[1])
        con.execute("UPDATE run_params SET value = '5', value_num = 5, value_text = '5' WHERE key = 'depth'")
        con.execute("CHECKPOINT")
        con.close()
        """,
        str(ws.catalog_path),
    )
    assert list(runs(ws=ws)["params.depth"]) == [5]
    copy = ws.catalog_path.with_name("copy.duckdb")
    _python(
        """
        import os, shutil, sys, duckdb
        path, copy = sys.argv[1], sys.argv[2]
        shutil.copy(path, copy)
        con = duckdb.connect(copy)
        con.execute("UPDATE run_params SET value = '6', value_num = 6, value_text = '6' WHERE key = 'depth'")
        con.close()
        os.replace(copy, path)  # what a restore does: same size, maybe the same timestamps, new inode
        """,
        str(ws.catalog_path),
        str(copy),
    )
    assert list(runs(ws=ws)["params.depth"]) == [6]


# ------------------------------------------------------------------------------------------
# Locks, timestamps, threads, bounds


def test_no_file_lock_is_held_while_idle(ws) -> None:
    _finished_run(ws, depth=1)
    runs(ws=ws)
    runs(ws=ws)  # a hit
    assert CACHE.stats()["hits"] == 1
    # another process opens the catalog read-write at once (no retry: a held lock would fail it)
    out = _python(
        """
        import sys, duckdb
        con = duckdb.connect(sys.argv[1])
        con.execute("INSERT INTO experiments VALUES ('written-while-we-idle', now(), 'someone', NULL)")
        con.close()
        print("opened")
        """,
        str(ws.catalog_path),
    )
    assert out == "opened"
    assert "written-while-we-idle" in {e["name"] for e in experiments_summary(ws=ws)}


def test_answers_read_soon_after_a_change_are_not_stored(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    """The racy window: within it, a second write in the same timestamp tick could go unseen."""
    monkeypatch.setattr(CACHE, "racy_window_s", 3600.0)
    _finished_run(ws, depth=1)
    runs(ws=ws)
    runs(ws=ws)
    assert CACHE.stats() | {"bytes": 0} == {"hits": 0, "misses": 2, "stores": 0, "entries": 0, "bytes": 0}
    monkeypatch.setattr(CACHE, "clock", lambda: time.time_ns() + 3601 * 10**9)  # an hour later
    runs(ws=ws)
    runs(ws=ws)
    assert CACHE.stats()["stores"] == 1 and CACHE.stats()["hits"] == 1


def test_future_timestamps_are_not_trusted(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CACHE, "racy_window_s", 2.0)
    _finished_run(ws, depth=1)
    monkeypatch.setattr(CACHE, "clock", lambda: time.time_ns() - 60 * 10**9)  # the file is "from the future"
    runs(ws=ws)
    assert CACHE.stats()["stores"] == 0


def test_threads_never_see_time_go_backwards(ws) -> None:
    """Readers in several threads while a writer thread adds runs: each reader's counts only grow,
    and the last read after the writer finished sees every run."""
    _finished_run(ws, depth=0)
    done = threading.Event()
    seen: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def reader(index: int) -> None:
        counts = seen.setdefault(index, [])
        try:
            while not done.is_set():
                counts.append(len(runs(ws=ws)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for depth in range(1, 6):
        _finished_run(ws, depth=depth)
    time.sleep(0.1)
    done.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for counts in seen.values():
        assert counts == sorted(counts) and counts
    assert len(runs(ws=ws)) == 6
    # once the files are older than the racy window, the answer is kept and the next read hits
    # (while the writer wrote, nothing could be kept: how many reads hit then depends on speed)
    time.sleep(CACHE.racy_window_s + 0.1)
    hits = CACHE.stats()["hits"]
    assert len(runs(ws=ws)) == len(runs(ws=ws)) == 6
    assert CACHE.stats()["hits"] > hits


def test_memory_is_bounded(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CACHE, "max_entries", 2)
    _finished_run(ws, depth=1)
    for limit in range(1, 5):
        runs(limit=limit, ws=ws)
    assert CACHE.stats()["entries"] == 2
    runs(limit=4, ws=ws)  # the most recent stayed
    assert CACHE.stats()["hits"] == 1
    monkeypatch.setattr(CACHE, "max_bytes", 100)  # an answer over a quarter of the budget is not kept
    CACHE.clear()
    runs(ws=ws)
    assert CACHE.stats()["entries"] == 0


def test_switched_off_by_the_environment(ws, monkeypatch: pytest.MonkeyPatch, opens) -> None:
    monkeypatch.setenv(read_cache.ENV_SWITCH, "0")
    _finished_run(ws, depth=1)
    before = len(opens)
    runs(ws=ws)
    runs(ws=ws)
    assert len(opens) == before + 2 and CACHE.stats()["hits"] == 0

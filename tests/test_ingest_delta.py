"""Indexing only what a run appended (`runs.ingest_delta`) leaves exactly the rows a full fold gives.

The team server indexes every chunk a client sends; these tests append random event streams in
random chunks to a run in a workspace whose catalog is held (as the server holds it), index after
each chunk, and compare every run table with a second workspace that folds the same file whole.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest

from workbench.catalog.connection import connect, hold, release
from workbench.runs import ingest
from workbench.runs.events import EVENTS_FILE, run_dir
from workbench.runs.ids import new_run_id
from workbench.workspace import Workspace, init_workspace

TABLES = {
    "runs": "run_id, status, started_at, ended_at, duration_s, error, output_blob, pid, host",
    "run_params": "run_id, key, value, value_num, value_text",
    "run_metrics": "run_id, key, step, value, logged_at",
    "run_metric_summary": "run_id, key, last, min, max, last_step, count",
    "run_tags": "run_id, key, value",
    "run_artifacts": "run_id, name, kind, blob, size, meta, logged_at",
    "run_inputs": "run_id, snapshot_name, snapshot_version",
}


def _at(second: int) -> str:
    return f"2026-12-01T10:{second // 60 % 60:02d}:{second % 60:02d}+00:00"


def _events(rng: random.Random, run_id: str, count: int) -> list[dict]:
    """A run's life: start, running, then params, tags, metrics (with and without steps, NaN, ties),
    artifacts and inputs in random order, then an end event."""
    events = [
        {"t": "start", "run_id": run_id, "experiment": "exp", "kind": "interactive", "status": "queued",
         "created_at": _at(0), "creator": "alice"},
        {"t": "status", "status": "running", "at": _at(1), "pid": 123, "host": "h"},
    ]  # fmt: skip
    for i in range(count):
        choice = rng.random()
        if choice < 0.6:
            value = rng.choice([rng.random(), float("nan"), float(rng.randint(0, 3))])
            # repeated steps, but never at a metric's highest one: which of two points logged at the
            # same highest step is `last` is not defined, in a whole fold or here
            step = rng.choice([None, rng.randint(500, 505), 1000 + i])
            events.append({"t": "metric", "key": rng.choice("abc"), "value": value, "step": step, "at": _at(i)})
        elif choice < 0.75:
            events.append({"t": "param", "key": rng.choice("pq"), "value": rng.choice([1, 0.5, "x", [1, 2], None])})
        elif choice < 0.85:
            events.append({"t": "tag", "key": rng.choice("uv"), "value": rng.choice(["one", 2])})
        elif choice < 0.95:
            events.append({"t": "artifact", "name": rng.choice(["m.skops", "f.txt"]), "kind": "file",
                           "blob": f"{i:064x}", "size": i, "meta": {"i": i}, "at": _at(i)})  # fmt: skip
        else:
            events.append({"t": "input", "name": "wine", "version": rng.randint(1, 2)})
    events.append({"t": "end", "status": rng.choice(["finished", "failed"]), "ended_at": _at(59),
                   "duration_s": 58.0, "error": {"ename": "E", "evalue": "boom"}})  # fmt: skip
    return events


def _lines(events: list[dict]) -> bytes:
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


def _dump(ws: Workspace) -> dict[str, list]:
    with connect(ws) as con:
        return {
            table: sorted(
                (
                    tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in row)
                    for row in con.execute(f"SELECT {columns} FROM {table}").fetchall()
                ),
                key=repr,
            )  # fmt: skip
            for table, columns in TABLES.items()
        }


def _audited(ws: Workspace) -> list[str]:
    with connect(ws) as con:
        return sorted(a for (a,) in con.execute("SELECT action FROM audit WHERE target LIKE 'run:%'").fetchall())


@pytest.fixture
def held(tmp_path: Path):
    ws = init_workspace(tmp_path / "held")
    hold(ws, "this test")
    yield ws
    release(ws)


def _whole(tmp_path: Path, held_ws: Workspace, run_id: str) -> Workspace:
    """A second workspace that indexes the same event file from scratch, whole."""
    ws = init_workspace(tmp_path / "whole")
    target = run_dir(ws, run_id)
    target.mkdir(parents=True)
    shutil.copy(run_dir(held_ws, run_id) / EVENTS_FILE, target / EVENTS_FILE)
    ingest.ingest_all(ws)
    return ws


@pytest.mark.parametrize("seed", range(6))
def test_chunk_by_chunk_equals_a_whole_fold(tmp_path: Path, held: Workspace, seed: int) -> None:
    rng = random.Random(seed)
    run_id = new_run_id()
    events = _events(rng, run_id, rng.randint(20, 200))
    path = run_dir(held, run_id) / EVENTS_FILE
    path.parent.mkdir(parents=True)
    position = 0
    while position < len(events):
        size = rng.choice([1, 2, 5, 20])
        with open(path, "ab") as handle:
            handle.write(_lines(events[position : position + size]))
        position += size
        ingest.ingest_runs(held, [run_id])
    assert _dump(held) == _dump(_whole(tmp_path, held, run_id))
    assert _audited(held) == ["run.failed" if events[-1]["status"] == "failed" else "run.finished", "run.started"]


def test_a_torn_last_line_waits_for_its_end(tmp_path: Path, held: Workspace) -> None:
    run_id = new_run_id()
    events = _events(random.Random(7), run_id, 30)
    path = run_dir(held, run_id) / EVENTS_FILE
    path.parent.mkdir(parents=True)
    data = _lines(events)
    cut = data.index(b"\n", len(data) // 2) + 10  # ten bytes into a line
    path.write_bytes(data[:cut])
    ingest.ingest_runs(held, [run_id])
    with open(path, "ab") as handle:
        handle.write(data[cut:])
    assert ingest.ingest_runs(held, [run_id]) == [run_id]  # final once its end event is indexed
    assert _dump(held) == _dump(_whole(tmp_path, held, run_id))


def test_a_delta_that_lost_a_race_is_folded_whole(tmp_path: Path, held: Workspace) -> None:
    """Another indexer moved the run on between the size read and the write: no point twice."""
    run_id = new_run_id()
    events = _events(random.Random(8), run_id, 40)
    path = run_dir(held, run_id) / EVENTS_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(_lines(events[:20]))
    ingest.ingest_runs(held, [run_id])
    with open(path, "ab") as handle:
        handle.write(_lines(events[20:]))
    with connect(held) as con:  # as if indexed from a size this indexer did not read from
        con.execute("UPDATE run_ingest SET events_size = events_size - 1 WHERE run_id = ?", [run_id])
    ingest.ingest_runs(held, [run_id])
    assert _dump(held) == _dump(_whole(tmp_path, held, run_id))

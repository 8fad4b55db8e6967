"""Folding run event files into the catalog, and marking runs that died as killed.

Writers never touch the catalog on the hot path: they append to `runs/<id>/events.jsonl` and
touch a marker `pending/<id>`. Whoever next needs fresh data (the runner at the end of a run,
the CLI, the REST API, a query) calls `ingest_pending`, which re-reads only the marked runs and
replaces their rows in one short transaction (on a catalog held open, as the team server holds it,
a run indexed before gets only what it appended since: `ingest_delta`). A marker is removed once its run is final and
fully ingested, so the cost stays proportional to active runs, not to history. Ingestion is
idempotent, and `ingest_all` rebuilds the run tables from the folders alone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from workbench.catalog import transaction
from workbench.errors import StoreBusyError
from workbench.permissions import make_dir, open_for_append
from workbench.runs.events import EVENTS_FILE, EventWriter, heartbeat_age, now_iso, parse_events, read_events, run_dir
from workbench.workspace import Workspace

if TYPE_CHECKING:  # pandas is imported where frames are built: a notebook's first log call does not need it
    import pandas as pd

T = TypeVar("T")
FINAL_STATUSES = ("finished", "failed", "killed")
#: In a run folder: the run is logged by a remote client through the team server (`runs.receive`).
RECEIPT_FILE = "received.json"
#: A remote run's process is on another machine: it is presumed dead only after this many times
#: `stale_after()` without a chunk or keep-alive (its sender sends one every few seconds while alive).
REMOTE_STALE_FACTOR = 120
IO_RETRIES = 3
RUN_TABLES = (
    "runs",
    "run_params",
    "run_metrics",
    "run_metric_summary",
    "run_tags",
    "run_artifacts",
    "run_inputs",
)

_RUN_COLUMNS = (
    "run_id", "experiment", "kind", "status", "notebook", "notebook_hash", "notebook_blob", "output_blob",
    "created_at", "started_at", "ended_at", "duration_s", "creator", "host", "pid", "git_commit",
    "git_dirty", "python_version", "packages", "kernel", "error", "parent_run_id", "sweep_id", "pipeline_run",
)  # fmt: skip
#: Catalog paths whose pending runs a thread of this process indexes (the team server: `server.serve`);
#: its readers do not index before a query (`index_runs`).
BACKGROUND_INDEXED: set[str] = set()


def pending_dir(ws: Workspace):
    return ws.root / "pending"


def mark_pending(ws: Workspace, run_id: str) -> None:
    path = make_dir(pending_dir(ws)) / run_id
    os.close(open_for_append(path))
    os.utime(path)


def writer_for(ws: Workspace, run_id: str) -> EventWriter:
    """An EventWriter that also marks the run as having news for the catalog."""
    return EventWriter(run_dir(ws, run_id) / EVENTS_FILE, on_flush=lambda: mark_pending(ws, run_id))


def parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def fold(events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """Reduce a run's events to its catalog rows; None if the run has no start event."""
    run: dict[str, Any] | None = None
    params: dict[str, Any] = {}
    tags: dict[str, str] = {}
    artifacts: dict[str, dict[str, Any]] = {}
    inputs: dict[tuple[str, int], None] = {}
    metrics: list[tuple[str, int | None, float, str | None]] = []
    for event in events:
        kind = event.get("t")
        if kind == "metric":  # by far the most frequent event: checked first
            if run is not None:
                metrics.append((event["key"], event.get("step"), event.get("value"), event.get("at")))
            continue
        if kind == "start":
            run = {c: event.get(c) for c in _RUN_COLUMNS}
        elif run is None:
            continue
        elif kind == "status":
            run["status"] = event["status"]
            if event["status"] == "running":
                run["started_at"] = event.get("at")
                run["pid"], run["host"] = event.get("pid", run.get("pid")), event.get("host", run.get("host"))
        elif kind == "param":
            params[event["key"]] = event.get("value")
        elif kind == "tag":
            tags[event["key"]] = str(event.get("value"))
        elif kind == "artifact":
            artifacts[event["name"]] = event
        elif kind == "input":
            inputs[(event["name"], int(event["version"]))] = None
        elif kind == "end":
            for key in ("status", "ended_at", "duration_s", "error", "output_blob"):
                if event.get(key) is not None:
                    run[key] = event[key]
    if run is None:
        return None
    return {"run": run, "params": params, "tags": tags, "artifacts": artifacts, "inputs": list(inputs),
            "metrics": metrics}  # fmt: skip


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def param_row(run_id: str, key: str, value: Any) -> tuple[str, str, str, float | None, str]:
    """A run_params row: the value as JSON, its numeric view (None if not a number) and its text."""
    text = value if isinstance(value, str) else json.dumps(value)
    return (run_id, key, json.dumps(value), _number(value), text)


def metric_columns(folded: list[dict[str, Any]]) -> dict[str, Any]:
    """The run_metrics rows of folded runs as columns, built a column at a time rather than a row at
    a time (a run may log millions of points). Values and times are converted as `_number` and
    `parse_time` convert them one by one; a NaN value is stored as NULL, as pandas' float columns
    always stored it."""
    run_ids: list[str] = []
    keys: list[str] = []
    steps: list[Any] = []
    values: list[Any] = []
    times: list[Any] = []
    for item in folded:
        metrics = item["metrics"]
        if not metrics:
            continue
        run_keys, run_steps, run_values, run_times = zip(*metrics, strict=True)
        run_ids += [item["run"]["run_id"]] * len(metrics)
        keys += run_keys
        steps += run_steps if None not in run_steps else [i if s is None else s for i, s in enumerate(run_steps)]
        values += run_values
        times += run_times
    if not all(type(v) is float for v in values):  # anything but what wb.log_metric writes
        values = [_number(v) for v in values]
    parse = datetime.fromisoformat
    logged_at = [parse(t) if isinstance(t, str) else None for t in times]  # as parse_time, inlined
    return {"run_id": run_ids, "key": keys, "step": steps, "value": values, "logged_at": logged_at}


def run_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Runs-table values of folded run fields (all of a run's, or those an event changed): times
    parsed, packages and error as JSON text."""
    values = dict(fields)
    for key in ("created_at", "started_at", "ended_at"):
        if key in values:
            values[key] = parse_time(values[key])
    for key in ("packages", "error"):
        if key in values:
            values[key] = json.dumps(values[key]) if values[key] is not None else None
    return values


def artifact_row(run_id: str, event: dict[str, Any]) -> tuple[Any, ...]:
    """A run_artifacts row from an artifact event."""
    return (run_id, event["name"], event["kind"], event["blob"], event.get("size"), json.dumps(event.get("meta")),
            parse_time(event.get("at")))  # fmt: skip


def _frames(folded: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    import pandas as pd

    runs, params, tags, artifacts, inputs = [], [], [], [], []
    for item in folded:
        run = run_values(item["run"])
        run_id = run["run_id"]
        runs.append(run)
        params += [param_row(run_id, key, value) for key, value in item["params"].items()]
        tags += [(run_id, k, v) for k, v in item["tags"].items()]
        artifacts += [artifact_row(run_id, a) for a in item["artifacts"].values()]
        inputs += [(run_id, name, version) for name, version in item["inputs"]]

    def frame(rows: list, columns: list[str]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=columns)

    return {
        "runs": pd.DataFrame(runs, columns=list(_RUN_COLUMNS)),
        "run_params": frame(params, ["run_id", "key", "value", "value_num", "value_text"]),
        "run_metrics": pd.DataFrame(metric_columns(folded)),
        "run_tags": frame(tags, ["run_id", "key", "value"]),
        "run_artifacts": frame(artifacts, ["run_id", "name", "kind", "blob", "size", "meta", "logged_at"]),
        "run_inputs": frame(inputs, ["run_id", "snapshot_name", "snapshot_version"]),
    }


def ingest_runs(ws: Workspace, run_ids: list[str]) -> list[str]:
    """Bring the catalog rows of `run_ids` up to what their event files say; return final ones.

    A run the catalog indexed before, on a catalog held open, gets only what was appended since
    (`ingest_delta`); any other run is folded from its whole file and its rows replaced.
    """
    from workbench.runs import ingest_delta

    settled: list[str] = []
    deltas: list[ingest_delta.Delta] = []
    whole: list[str] = []
    indexed = _indexed(ws, run_ids)
    for run_id in run_ids:
        path = run_dir(ws, run_id) / EVENTS_FILE
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if run_id in indexed:
            done, status = indexed[run_id]
            if done >= size:  # nothing new: not read again
                if status in FINAL_STATUSES:
                    settled.append(run_id)
                continue
            tail = ingest_delta.read_tail(path, done)
            delta = ingest_delta.fold_delta(run_id, done, tail[1], tail[0]) if tail else None
            if delta is not None:
                if delta.size > done:  # else only part of a line is new: the next pass reads it whole
                    deltas.append(delta)
                continue
        whole.append(run_id)
    final: list[str] = []
    if deltas:
        statuses, stale = _with_retries(lambda: ingest_delta.apply_deltas(ws, deltas))
        final += [run_id for run_id, status in statuses.items() if status in FINAL_STATUSES]
        whole += [delta.run_id for delta in stale]
    return settled + final + _ingest_whole(ws, whole)


def _ingest_whole(ws: Workspace, run_ids: list[str]) -> list[str]:
    """Fold each run's whole event file and replace its rows; return the final ones written."""
    folded, sizes, final = [], [], []
    for run_id in run_ids:
        path = run_dir(ws, run_id) / EVENTS_FILE
        try:  # read once: the size recorded is exactly what was folded (a delta continues from it)
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        size = len(data)
        item = fold(parse_events(data))
        if item is None:
            continue
        folded.append(item)
        sizes.append((run_id, size))
        if item["run"]["status"] in FINAL_STATUSES:
            final.append(run_id)
    if not folded:
        return []
    frames = _frames(folded)
    ids = [rid for rid, _ in sizes]
    written = _with_retries(lambda: _replace_rows(ws, ids, folded, frames, sizes))
    return [run_id for run_id in final if run_id in written]


def _with_retries(write: Callable[[], T]) -> T:
    """`write()`, again after a DuckDB IO error (seen rarely under heavy multi-process load; every
    indexing write is idempotent); one that outlasts the retries is a busy store to callers."""
    for attempt in range(IO_RETRIES):
        try:
            return write()
        except duckdb.IOException as exc:
            if attempt == IO_RETRIES - 1:
                raise StoreBusyError(f"Could not index runs in the catalog: {exc}", "Run 'workbench doctor'.") from exc
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _indexed(ws: Workspace, run_ids: list[str]) -> dict[str, tuple[int, str | None]]:
    """On a catalog held open (the team server, where this read costs a cursor and never waits for
    the writer): how many bytes of each run's events the catalog has indexed, and its status. A
    reader indexes every live run before each query; what it already has is not read again. Elsewhere
    nothing (opening the catalog to ask would cost more than reading a run's events)."""
    from workbench.catalog.connection import connect, is_held

    if not run_ids or not is_held(ws):
        return {}
    with connect(ws) as con:
        rows = con.execute(
            "SELECT i.run_id, i.events_size, r.status FROM run_ingest i LEFT JOIN runs r USING (run_id) "
            "WHERE i.run_id IN (SELECT unnest(?::VARCHAR[]))",
            [list(run_ids)],
        ).fetchall()
    return {run_id: (size, status) for run_id, size, status in rows if size is not None}


def _replace_rows(ws: Workspace, ids: list[str], folded: list[dict[str, Any]], frames: dict[str, pd.DataFrame],
                  sizes: list[tuple[str, int]]) -> set[str]:  # fmt: skip
    """One transaction: the runs' rows in every run table are replaced by what their files say.

    Two processes may index the same run at once; the one that read less of its event file must
    not overwrite the other's newer rows, so runs already indexed from at least as many bytes are
    skipped. Returns the run ids written.
    """
    import pandas as pd

    with transaction(ws) as con:
        # (run id, indexed from at least as many bytes already, status in the catalog) of each run
        if len(sizes) == 1:  # a writer indexing its own run: plain comparisons cost half as much
            [(run_id, size)] = sizes
            state = con.execute(
                "SELECT ?, (SELECT events_size >= ? FROM run_ingest WHERE run_id = ?), "
                "(SELECT status FROM runs WHERE run_id = ?)",
                [run_id, size, run_id, run_id],
            ).fetchall()
        else:
            con.register("__wb_probe", pd.DataFrame(sizes, columns=["run_id", "events_size"]))
            state = con.execute(
                "SELECT p.run_id, i.events_size >= p.events_size, r.status FROM __wb_probe p "
                "LEFT JOIN run_ingest i USING (run_id) LEFT JOIN runs r USING (run_id)"
            ).fetchall()
            con.unregister("__wb_probe")
        newer = {run_id for run_id, indexed_more, _ in state if indexed_more}
        if newer:
            ids = [r for r in ids if r not in newer]
            folded = [item for item in folded if item["run"]["run_id"] not in newer]
            sizes = [(r, size) for r, size in sizes if r not in newer]
            frames = {table: frame[~frame["run_id"].isin(newer)] for table, frame in frames.items()}
        if not ids:
            return set()
        if len(ids) == 1:
            match, args = "run_id = ?", ids
        else:
            con.register("__wb_ids", pd.DataFrame({"run_id": ids}))
            match, args = "run_id IN (SELECT run_id FROM __wb_ids)", []
        audit_transitions(con, folded, {run_id: status for run_id, _, status in state if status is not None})
        for table in RUN_TABLES:
            con.execute(f"DELETE FROM {table} WHERE {match}", args)
        for table, frame in frames.items():
            if len(frame):
                con.register("__wb_rows", frame)
                columns = ", ".join(frame.columns)
                con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM __wb_rows")
                con.unregister("__wb_rows")
        if len(frames["run_metrics"]):
            con.execute(
                "INSERT INTO run_metric_summary SELECT run_id, key, arg_max_null(value, step), min(value), max(value), "
                f"max(step), count(*) FROM run_metrics WHERE {match} GROUP BY run_id, key",
                args,
            )
        con.execute(
            "INSERT INTO experiments SELECT DISTINCT r.experiment, min(r.created_at), any_value(r.creator), NULL "
            f"FROM runs r WHERE r.{match} AND r.experiment NOT IN (SELECT name FROM experiments) GROUP BY r.experiment",
            args,
        )
        con.execute(f"DELETE FROM run_ingest WHERE {match}", args)
        if len(sizes) == 1:
            con.execute("INSERT INTO run_ingest VALUES (?, ?, now())", list(sizes[0]))
        else:
            con.register("__wb_sizes", pd.DataFrame(sizes, columns=["run_id", "events_size"]))
            con.execute("INSERT INTO run_ingest SELECT run_id, events_size, now() FROM __wb_sizes")
    return set(ids)


def audit_transitions(con: Any, folded: list[dict[str, Any]], known: dict[str, str]) -> None:
    """One audit entry when a run is first seen started and one when it is first seen final.

    Runs never write the catalog while they work, so their transitions are audited here, when
    the catalog learns about them, in the same transaction that indexes them, stamped with the
    times the run itself recorded (the runner indexes a run as it starts, in the background).
    `known`: the status the catalog had for each run it already knew.
    """
    from workbench import audit

    for item in folded:
        run = item["run"]
        before, now = known.get(run["run_id"]), run["status"]
        target = f"run:{run['run_id']}"
        details = {"experiment": run["experiment"], "notebook": run.get("notebook"), "kind": run.get("kind")}
        if run.get("started_at") and before in (None, "queued"):
            audit.record(con, "run.started", target, details, actor=run.get("creator"),
                         occurred_at=parse_time(run["started_at"]))  # fmt: skip
        if now in FINAL_STATUSES and before not in FINAL_STATUSES:
            action = "run.finished" if now == "finished" else f"run.{now}"
            audit.record(con, action, target, {**details, "duration_s": run.get("duration_s")},
                         actor=run.get("creator"), occurred_at=parse_time(run.get("ended_at")))  # fmt: skip


def _alive(pid: int | None, host: str | None) -> bool:
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_after() -> float:
    """Seconds without a heartbeat after which a run whose process is gone counts as dead."""
    return float(os.environ.get("WORKBENCH_STALE_AFTER", "30"))


def _reap_if_dead(ws: Workspace, run_id: str) -> None:
    """Write a `killed` end event for a running run whose process is gone."""
    folder = run_dir(ws, run_id)
    # The heartbeat first: a live run's events are not read (a reader calls this for every live run).
    limit = stale_after() * (REMOTE_STALE_FACTOR if (folder / RECEIPT_FILE).is_file() else 1)
    age = heartbeat_age(folder)
    if age is not None and age < limit:
        return
    try:
        if age is None and time.time() - folder.stat().st_mtime < limit:
            return
    except FileNotFoundError:
        return  # no such run (a stray marker)
    item = fold(read_events(folder / EVENTS_FILE))
    if item is None or item["run"]["status"] in FINAL_STATUSES:
        return
    run = item["run"]
    if _alive(run.get("pid"), run.get("host")) and (age is None or age < 10 * limit):
        return  # alive: queued behind others, or busy in a long cell without heartbeats
    writer = writer_for(ws, run_id)
    started = parse_time(run.get("started_at") or run.get("created_at"))
    writer.emit(
        "end",
        status="killed",
        ended_at=now_iso(),
        duration_s=(datetime.now(timezone.utc) - started).total_seconds() if started else None,
        error={"ename": "Killed", "evalue": "The run's process stopped without finishing (killed or crashed).",
               "traceback": [], "cell_index": None},
    )  # fmt: skip
    writer.close()


def ingest_pending(ws: Workspace) -> int:
    """Ingest every run with unindexed events; reap dead runs. Returns how many runs were read."""
    folder = pending_dir(ws)
    if not folder.is_dir():
        return 0
    from workbench.runs.ids import RUN_ID

    run_ids = [entry.name for entry in os.scandir(folder) if RUN_ID.match(entry.name)]
    if not run_ids:
        return 0
    for run_id in run_ids:
        _reap_if_dead(ws, run_id)
    _settle(ws, run_ids)
    return len(run_ids)


def index_runs(ws: Workspace, run_ids: list[str] | None = None) -> None:
    """Bring the catalog up to date with the run folders: `run_ids` (a writer after its own events)
    or, with None, every run marked pending (a reader before a query; dead runs are reaped first).

    The one way to index runs. It tolerates only a catalog that stays busy past the lock timeout
    (`StoreBusyError`): the runs' files are complete and still marked pending, so the next reader
    indexes them and nothing is lost. Every other error is raised. With None in a process that indexes
    pending runs in a thread of its own (`BACKGROUND_INDEXED`: the team server, which indexes each chunk
    it receives before acknowledging it), nothing: a reader there never writes or waits for a writer.
    """
    if run_ids is None and str(ws.catalog_path) in BACKGROUND_INDEXED:
        return
    try:
        if run_ids is None:
            ingest_pending(ws)
        else:
            _settle(ws, run_ids)
    except StoreBusyError:
        pass


def _settle(ws: Workspace, run_ids: list[str]) -> None:
    """Ingest `run_ids` and drop the pending marker of those that are final and fully indexed.

    A marker touched again after it was read (a late event) is kept for the next reader.
    """
    folder = pending_dir(ws)
    marks = {}
    for run_id in run_ids:
        try:
            marks[run_id] = (folder / run_id).stat().st_mtime_ns
        except FileNotFoundError:
            marks[run_id] = None
    for run_id in ingest_runs(ws, run_ids):
        path = folder / run_id
        try:
            if marks[run_id] is not None and path.stat().st_mtime_ns == marks[run_id]:
                path.unlink()
        except FileNotFoundError:
            pass


def ingest_all(ws: Workspace) -> int:
    """Re-index every run folder (rebuilds the run tables from the files alone)."""
    from workbench.runs.ids import RUN_ID

    if not ws.runs_dir.is_dir():
        return 0
    run_ids = sorted(e.name for e in os.scandir(ws.runs_dir) if RUN_ID.match(e.name))
    for start in range(0, len(run_ids), 500):
        ingest_runs(ws, run_ids[start : start + 500])
    return len(run_ids)

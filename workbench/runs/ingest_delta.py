"""Indexing only what a run appended since the catalog last read its event file.

Why: the team server indexes each chunk a client sends before acknowledging it. Folding the
whole event file again for every chunk, and replacing all of the run's rows, made a long run's
cost grow with the square of its length and held the catalog's write lock longer with every
chunk (readers of `GET /runs` then waited behind it). Here the catalog's own record of how many
bytes it indexed (`run_ingest.events_size`) is the starting point: the new complete lines are
folded into a `Delta`, which is applied in one short transaction (new metric points inserted,
metric summaries merged, params/tags/artifacts replaced by key, status and end fields updated),
leaving exactly the rows a full re-fold would give.

Used where the catalog is held open (`ingest._indexed` knows the sizes without opening the
file). A delta is refused, and the run folded in full instead, when it cannot be applied as a
continuation: the indexed size is not at a line boundary, the file is shorter than indexed, the
new lines hold another `start` event, or another indexer moved the run on in the meantime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.catalog import transaction
from workbench.runs.events import parse_events
from workbench.workspace import Workspace

#: Fields of the runs table a status or end event can change.
_END_FIELDS = ("status", "ended_at", "duration_s", "error", "output_blob")


@dataclass
class Delta:
    """What the lines a run appended since `offset` change in its catalog rows."""

    run_id: str
    offset: int  # the indexed size the delta continues from
    size: int  # the indexed size once applied (the end of its last complete line)
    changes: dict[str, Any] = field(default_factory=dict)  # runs columns set by status/end events
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[tuple[str, int], None] = field(default_factory=dict)
    metrics: list[tuple[str, int | None, float, str | None]] = field(default_factory=list)


def read_tail(path: Path, offset: int) -> tuple[list[dict[str, Any]], int] | None:
    """The complete events after byte `offset` of `path` and the offset after the last of them, or
    None when `offset` is not where a line starts (then only a full fold reads the file as it is)."""
    try:
        with open(path, "rb") as handle:
            if offset:
                handle.seek(offset - 1)
                if handle.read(1) != b"\n":
                    return None
            data = handle.read()
    except FileNotFoundError:
        return None
    end = data.rfind(b"\n") + 1
    return parse_events(data[:end]), offset + end


def fold_delta(run_id: str, offset: int, size: int, events: list[dict[str, Any]]) -> Delta | None:
    """Reduce appended events as `ingest.fold` reduces a whole file; None if they restart the run."""
    delta = Delta(run_id, offset, size)
    changes = delta.changes
    for event in events:
        kind = event.get("t")
        if kind == "metric":
            delta.metrics.append((event["key"], event.get("step"), event.get("value"), event.get("at")))
        elif kind == "start":
            return None
        elif kind == "status":
            changes["status"] = event["status"]
            if event["status"] == "running":
                changes["started_at"] = event.get("at")
                for key in ("pid", "host"):
                    if key in event:
                        changes[key] = event[key]
        elif kind == "param":
            delta.params[event["key"]] = event.get("value")
        elif kind == "tag":
            delta.tags[event["key"]] = str(event.get("value"))
        elif kind == "artifact":
            delta.artifacts[event["name"]] = event
        elif kind == "input":
            delta.inputs[(event["name"], int(event["version"]))] = None
        elif kind == "end":
            changes.update({key: event[key] for key in _END_FIELDS if event.get(key) is not None})
    return delta


def apply_deltas(ws: Workspace, deltas: list[Delta]) -> tuple[dict[str, str], list[Delta]]:
    """Apply `deltas` in one transaction. Returns each applied run's status after it, and the
    deltas refused because the catalog no longer holds the size they continue from."""
    from workbench.runs.ingest import audit_transitions

    with transaction(ws) as con:
        ids = [d.run_id for d in deltas]
        indexed = dict(
            con.execute(
                "SELECT run_id, events_size FROM run_ingest WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [ids]
            ).fetchall()
        )
        stale = [d for d in deltas if indexed.get(d.run_id) != d.offset]
        fresh = [d for d in deltas if indexed.get(d.run_id) == d.offset]
        statuses: dict[str, str] = {}
        for delta in fresh:
            run = _run_row(con, delta.run_id)
            if run is None:
                stale.append(delta)
                continue
            after = {**run, **delta.changes}
            audit_transitions(con, [{"run": after}], {delta.run_id: run["status"]})
            _update_run(con, delta)
            _replace_keyed(con, delta)
            _append_metrics(con, delta)
            con.execute(
                "UPDATE run_ingest SET events_size = ?, ingested_at = now() WHERE run_id = ?",
                [delta.size, delta.run_id],
            )
            statuses[delta.run_id] = after["status"]
    return statuses, stale


_AUDITED = ("run_id", "status", "experiment", "notebook", "kind", "creator", "started_at", "ended_at", "duration_s")


def _run_row(con: Any, run_id: str) -> dict[str, Any] | None:
    """The run's catalog fields the audit of its transitions needs, times as ISO text like events."""
    rows = con.execute(f"SELECT {', '.join(_AUDITED)} FROM runs WHERE run_id = ?", [run_id]).fetchall()
    if not rows:
        return None
    row = rows[0]
    run = dict(zip(_AUDITED, row, strict=True))
    for key in ("started_at", "ended_at"):
        if run[key] is not None:
            run[key] = run[key].isoformat()
    return run


def _update_run(con: Any, delta: Delta) -> None:
    from workbench.runs.ingest import run_values

    if not delta.changes:
        return
    values = run_values(delta.changes)
    columns = ", ".join(f"{key} = ?" for key in values)
    con.execute(f"UPDATE runs SET {columns} WHERE run_id = ?", [*values.values(), delta.run_id])


def _replace_keyed(con: Any, delta: Delta) -> None:
    """Params, tags and artifacts are the last value per key: the new ones replace the old rows."""
    from workbench.runs.ingest import artifact_row, param_row

    run_id = delta.run_id
    for key, value in delta.params.items():
        con.execute("DELETE FROM run_params WHERE run_id = ? AND key = ?", [run_id, key])
        con.execute("INSERT INTO run_params VALUES (?, ?, ?, ?, ?)", list(param_row(run_id, key, value)))
    for key, value in delta.tags.items():
        con.execute("DELETE FROM run_tags WHERE run_id = ? AND key = ?", [run_id, key])
        con.execute("INSERT INTO run_tags VALUES (?, ?, ?)", [run_id, key, value])
    for name, event in delta.artifacts.items():
        con.execute("DELETE FROM run_artifacts WHERE run_id = ? AND name = ?", [run_id, name])
        con.execute(
            "INSERT INTO run_artifacts (run_id, name, kind, blob, size, meta, logged_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            list(artifact_row(run_id, event)),
        )
    for name, version in delta.inputs:
        con.execute(
            "INSERT INTO run_inputs SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM run_inputs "
            "WHERE run_id = ? AND snapshot_name = ? AND snapshot_version = ?)",
            [run_id, name, version, run_id, name, version],
        )


def _append_metrics(con: Any, delta: Delta) -> None:
    """Insert the new points and merge them into the run's per-metric summary rows.

    A point logged without a step gets its position among the run's points as a full fold gives
    it (the run's point count so far, from the summary, is where the new ones start). The merged
    `last` is the value at the highest step, NaN (NULL) when that point was NaN, as in the full
    fold (of two points at the same highest step, either one, as there).
    """
    import pandas as pd

    from workbench.runs.ingest import metric_columns

    if not delta.metrics:
        return
    metrics = delta.metrics
    if any(step is None for _, step, _, _ in metrics):
        [(before,)] = con.execute(
            "SELECT coalesce(sum(count), 0) FROM run_metric_summary WHERE run_id = ?", [delta.run_id]
        ).fetchall()
        metrics = [(k, before + i if s is None else s, v, t) for i, (k, s, v, t) in enumerate(metrics)]
    frame = pd.DataFrame(metric_columns([{"run": {"run_id": delta.run_id}, "metrics": metrics}]))
    con.register("__wb_points", frame)
    try:
        con.execute("INSERT INTO run_metrics (run_id, key, step, value, logged_at) SELECT * FROM __wb_points")
        new = (
            "(SELECT run_id, key, arg_max_null(value, step) AS last, min(value) AS min, max(value) AS max, "
            "max(step) AS last_step, count(*) AS count FROM __wb_points GROUP BY run_id, key) n"
        )
        con.execute(
            "UPDATE run_metric_summary s SET "
            "last = CASE WHEN n.last_step > s.last_step OR s.last_step IS NULL THEN n.last ELSE s.last END, "
            "min = least(s.min, n.min), max = greatest(s.max, n.max), "
            f"last_step = greatest(s.last_step, n.last_step), count = s.count + n.count FROM {new} "
            "WHERE s.run_id = n.run_id AND s.key = n.key"
        )
        con.execute(
            f"INSERT INTO run_metric_summary SELECT n.* FROM {new} WHERE NOT EXISTS "
            "(SELECT 1 FROM run_metric_summary s WHERE s.run_id = n.run_id AND s.key = n.key)"
        )
    finally:
        con.unregister("__wb_points")

"""One MLflow run as a Workbench run: its event file, written whole or not at all.

A run that already happened is recorded the way a live one is: `start`, `status`, `param`, `tag`,
`metric` and `end` events in `runs/<id>/events.jsonl`, which the catalog indexes
(`runs.ingest`). The events carry MLflow's own times (start, end, every metric point's
timestamp), so the run sorts, compares and reports as it did in MLflow. The file is written
under a temporary name and renamed into place, so a run is either fully there or absent, however
the import ends; an interrupted import leaves nothing that a re-import would not redo.

Run ids are derived from the MLflow run (its start time, and a hash of its MLflow id), so the
same MLflow run always maps to the same Workbench run, and a parent run can be named before it
is imported.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from workbench.names import derive_name
from workbench.permissions import make_dir
from workbench.runs.events import EVENTS_FILE, EventWriter, metric_line, metric_prefix, run_dir
from workbench.runs.ingest import mark_pending
from workbench.workspace import Workspace

#: MLflow run status -> Workbench run status. SCHEDULED and RUNNING runs are not imported yet.
STATUSES = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
KIND = "imported"
TAG_RUN_ID = "mlflow.run_id"
TAG_EXPERIMENT_ID = "mlflow.experiment_id"
TAG_EXPERIMENT_NAME = "mlflow.experiment_name"
TAG_TRACKING_URI = "mlflow.tracking_uri"
TAG_ARTIFACT_URI = "mlflow.artifact_uri"  # where the run's files stay: they are not copied
TAG_IMPORTED_FROM = "imported_from"
TAG_IMPORTED_AT = "imported_at"
_TMP_NAME = f".{EVENTS_FILE}.import.tmp"


@dataclass(frozen=True)
class Source:
    """Where runs come from, for their provenance tags."""

    tracking_uri: str  # without credentials
    imported_at: str


def experiment_name(mlflow_name: str) -> str:
    """The Workbench experiment for an MLflow experiment: its name made legal (`/Users/me/wine`
    -> `Users-me-wine`); the original name is kept in the run's `mlflow.experiment_name` tag."""
    return derive_name(mlflow_name, prefix="mlflow", fallback="mlflow")


def workbench_run_id(mlflow_run_id: str, start_ms: int) -> str:
    """`20231114-221320-1a2b3c4d`: MLflow's start time (so runs sort where they happened) and the
    first 32 bits of the MLflow id's sha256 (so the mapping needs no lookup table)."""
    started = datetime.fromtimestamp(start_ms // 1000, timezone.utc)
    return f"{started:%Y%m%d-%H%M%S}-{hashlib.sha256(mlflow_run_id.encode()).hexdigest()[:8]}"


def iso(ms: int) -> str:
    """An MLflow timestamp (milliseconds since the epoch, UTC) as the event files write times."""
    whole, rest = divmod(int(ms), 1000)
    return (datetime.fromtimestamp(whole, timezone.utc) + timedelta(milliseconds=rest)).isoformat()


def param_value(text: str) -> Any:
    """MLflow stores every parameter as text. A number whose text is exactly how Python writes it
    (`0.1`, `3`) becomes that number, so numeric filters and comparisons work on it; anything else
    (`1e-3`, `True`, `[1, 2]`) stays the text MLflow has. `str(value)` is MLflow's text either way."""
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if str(number) == text and (kind is int or math.isfinite(number)):
            return number
    return text


def run_events(run: Any, experiment: str, mlflow_experiment: str, histories: dict[str, list[Any]], source: Source,
               parent_run_id: str | None) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:  # fmt: skip
    """The events of one finished MLflow run (the last one is its `end`) and its metric lines."""
    info, data = run.info, run.data
    status = STATUSES[info.status]
    start_ms = info.start_time or info.end_time or 0
    run_id = workbench_run_id(info.run_id, start_ms)
    tags = dict(data.tags)
    start = {
        "run_id": run_id, "experiment": experiment, "kind": KIND, "status": "queued", "notebook": None,
        "created_at": iso(start_ms), "creator": info.user_id or tags.get("mlflow.user") or None,
        "host": None, "pid": None, "git_commit": tags.get("mlflow.source.git.commit"), "git_dirty": None,
        "python_version": None, "packages": None, "kernel": None, "parent_run_id": parent_run_id,
        "sweep_id": None, "pipeline_run": None,
    }  # fmt: skip
    events: list[tuple[str, dict[str, Any]]] = [
        ("start", start),
        ("status", {"status": "running", "at": start["created_at"]}),
    ]
    events += [("param", {"key": key, "value": param_value(value)}) for key, value in sorted(data.params.items())]
    tags.update({
        TAG_RUN_ID: info.run_id, TAG_EXPERIMENT_ID: str(info.experiment_id), TAG_TRACKING_URI: source.tracking_uri,
        TAG_EXPERIMENT_NAME: mlflow_experiment, TAG_ARTIFACT_URI: info.artifact_uri or "",
        TAG_IMPORTED_FROM: "mlflow", TAG_IMPORTED_AT: source.imported_at,
    })  # fmt: skip
    events += [("tag", {"key": key, "value": str(value)}) for key, value in sorted(tags.items())]
    end_ms = info.end_time
    error = None
    if status != "finished":
        error = {"ename": status.capitalize(), "evalue": f"The run ended {info.status} in MLflow, which records no "
                 "error message.", "traceback": [], "cell_index": None}  # fmt: skip
    events.append(("end", {
        "status": status, "ended_at": iso(end_ms) if end_ms else None,
        "duration_s": round((end_ms - start_ms) / 1000, 3) if end_ms and info.start_time else None,
        "error": error, "output_blob": None,
    }))  # fmt: skip
    lines = []
    for key in sorted(histories):
        prefix = metric_prefix(key)
        for point in sorted(histories[key], key=lambda m: (m.step, m.timestamp)):
            lines.append(metric_line(prefix, float(point.value), int(point.step), iso(point.timestamp)))
    return events, lines


def write_run(ws: Workspace, run_id: str, events: list[tuple[str, dict[str, Any]]], metric_lines: list[str]) -> None:
    """Write the run's whole event file under a temporary name, rename it into place (atomic: the
    run exists complete or not at all) and mark it for indexing. The metric points go before the
    `end` event, where a live run writes them."""
    folder = make_dir(run_dir(ws, run_id))
    tmp = folder / _TMP_NAME
    tmp.unlink(missing_ok=True)  # left by an interrupted import
    writer = EventWriter(tmp)
    try:
        for event, fields in events[:-1]:
            writer.emit(event, **fields)
        for line in metric_lines:
            writer.emit_line(line)
        writer.emit(events[-1][0], **events[-1][1])
        writer.close()
        os.replace(tmp, folder / EVENTS_FILE)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    mark_pending(ws, run_id)


def is_written(ws: Workspace, run_id: str) -> bool:
    """True if the run's event file exists (imported before, possibly not indexed yet)."""
    return (run_dir(ws, run_id) / EVENTS_FILE).is_file()

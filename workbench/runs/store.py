"""Reading runs back from the catalog: one run with everything it recorded, artifacts, series.

Every read first folds pending event files into the catalog (`index_runs`), so what callers see is
at most one flush behind the running notebooks. If the catalog is busy for long, reads go on
with what it already holds rather than failing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from workbench import blobs
from workbench.catalog import connect
from workbench.errors import NotFoundError, ValidationError
from workbench.remote.dispatch import remote_capable
from workbench.runs.ids import check_run_id
from workbench.runs.ingest import index_runs
from workbench.workspace import Workspace, current_workspace


@dataclass
class Artifact:
    name: str
    kind: str
    blob: str
    size: int | None
    meta: dict[str, Any] | None


@dataclass
class Run:
    """Everything one run recorded."""

    run_id: str
    experiment: str
    kind: str
    status: str
    notebook: str | None
    notebook_hash: str | None
    notebook_blob: str | None
    output_blob: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    creator: str | None
    host: str | None
    git_commit: str | None
    git_dirty: bool | None
    python_version: str | None
    packages: dict[str, str]
    kernel: str | None
    error: dict[str, Any] | None
    parent_run_id: str | None
    sweep_id: str | None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "finished"

    def artifact(self, name: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        known = ", ".join(a.name for a in self.artifacts) or "none"
        raise NotFoundError(f"Run {self.run_id} has no artifact {name!r} (has: {known}).")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "started_at", "ended_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    def __repr__(self) -> str:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in list(self.metrics.items())[:4] if v is not None)
        return f"<Run {self.run_id} {self.experiment} {self.status} {metrics}>"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@remote_capable("get_run")
def get_run(run_id: str, ws: Workspace | None = None) -> Run:
    """The run `run_id` with its params, last metric values, tags, artifacts and inputs."""
    ws = ws or current_workspace()
    check_run_id(run_id)
    index_runs(ws)
    with connect(ws) as con:
        cursor = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        row = cursor.fetchone()
        if row is None:
            raise NotFoundError(f"No run {run_id}.", "List runs with 'workbench runs list'.")
        record = dict(zip([d[0] for d in cursor.description], row, strict=True))
        params = {k: _json(v) for k, v in con.execute(
            "SELECT key, value FROM run_params WHERE run_id = ? ORDER BY key", [run_id]).fetchall()}  # fmt: skip
        metrics = dict(con.execute(
            "SELECT key, last FROM run_metric_summary WHERE run_id = ? ORDER BY key", [run_id]).fetchall())  # fmt: skip
        tags = dict(con.execute("SELECT key, value FROM run_tags WHERE run_id = ? ORDER BY key", [run_id]).fetchall())
        artifacts = [
            Artifact(name, kind, blob, size, _json(meta))
            for name, kind, blob, size, meta in con.execute(
                "SELECT name, kind, blob, size, meta FROM run_artifacts WHERE run_id = ? ORDER BY name",
                [run_id],
            ).fetchall()
        ]
        inputs = [f"{n}@{v}" for n, v in con.execute(
            "SELECT snapshot_name, snapshot_version FROM run_inputs WHERE run_id = ? ORDER BY 1, 2",
            [run_id]).fetchall()]  # fmt: skip
    return Run(
        run_id=record["run_id"], experiment=record["experiment"], kind=record["kind"], status=record["status"],
        notebook=record["notebook"], notebook_hash=record["notebook_hash"], notebook_blob=record["notebook_blob"],
        output_blob=record["output_blob"], created_at=record["created_at"], started_at=record["started_at"],
        ended_at=record["ended_at"], duration_s=record["duration_s"], creator=record["creator"],
        host=record["host"], git_commit=record["git_commit"], git_dirty=record["git_dirty"],
        python_version=record["python_version"], packages=_json(record["packages"]) or {},
        kernel=record["kernel"], error=_json(record["error"]), parent_run_id=record["parent_run_id"],
        sweep_id=record["sweep_id"], params=params, metrics=metrics, tags=tags, artifacts=artifacts,
        inputs=inputs,
    )  # fmt: skip


@remote_capable("metric_history")
def metric_history(run_ids: str | list[str], key: str, ws: Workspace | None = None) -> pd.DataFrame:
    """Every logged point of metric `key` for the given runs: columns run_id, step, value."""
    ws = ws or current_workspace()
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    for run_id in ids:
        check_run_id(run_id)
    index_runs(ws)
    with connect(ws) as con:
        con.register("__wb_ids", pd.DataFrame({"run_id": ids}, dtype=object))
        return con.execute(
            "SELECT run_id, step, value FROM run_metrics WHERE key = ? AND run_id IN (SELECT run_id FROM __wb_ids) "
            "ORDER BY run_id, step",
            [key],
        ).df()


@remote_capable("artifact_path")
def artifact_path(run: Run | str, name: str, ws: Workspace | None = None) -> Path:
    """Local path of a run's artifact file (read-only: it lives in the content-addressed store),
    checked against its hash first."""
    ws = ws or current_workspace()
    record = run if isinstance(run, Run) else get_run(run, ws)
    found = record.artifact(name)
    return blobs.verified_path(ws, found.blob, what=_artifact_label(record, name))


def _artifact_label(record: Run, name: str) -> str:
    return f"artifact {name!r} of run {record.run_id}"


@remote_capable("load_artifact")
def load_artifact(run: Run | str, name: str, ws: Workspace | None = None) -> Any:
    """An artifact as a Python object: models are loaded with skops' trusted types, figures as
    plotly Figures, text as str, anything else as bytes."""
    ws = ws or current_workspace()
    record = run if isinstance(run, Run) else get_run(run, ws)
    found = record.artifact(name)
    return artifact_object(found, blobs.read_verified(ws, found.blob, what=_artifact_label(record, name)))


def artifact_object(found: Artifact, data: bytes) -> Any:
    """The Python object of an artifact's verified bytes, by its kind (see `load_artifact`)."""
    if found.kind == "model":
        from workbench.models.serialization import load_model

        return load_model(data, found.meta)
    if found.kind == "figure":
        import plotly.io

        return plotly.io.from_json(data.decode())
    if found.kind == "text":
        return data.decode()
    return data


@remote_capable("executed_notebook_path")
def executed_notebook_path(run: Run | str, ws: Workspace | None = None) -> Path:
    ws = ws or current_workspace()
    record = run if isinstance(run, Run) else get_run(run, ws)
    return blobs.verified_path(ws, _output_blob(record), what=f"executed notebook of run {record.run_id}")


@remote_capable("read_executed_notebook")
def read_executed_notebook(run: Run | str, ws: Workspace | None = None) -> bytes:
    """The executed notebook's bytes, checked against their hash (for viewers)."""
    ws = ws or current_workspace()
    record = run if isinstance(run, Run) else get_run(run, ws)
    return blobs.read_verified(ws, _output_blob(record), what=f"executed notebook of run {record.run_id}")


def _output_blob(record: Run) -> str:
    if not record.output_blob:
        raise ValidationError(f"Run {record.run_id} has no executed notebook (status {record.status}).")
    return record.output_blob

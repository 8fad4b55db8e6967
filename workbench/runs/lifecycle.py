"""Starting and ending a run record: the one place that writes `start`, `status` and `end` events."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from workbench.identity import current_user
from workbench.names import validate_name
from workbench.runs import environment
from workbench.runs.events import EventWriter, now_iso
from workbench.runs.ids import new_run_id
from workbench.runs.ingest import settle, settle_quietly, writer_for
from workbench.workspace import Workspace

DEFAULT_EXPERIMENT = "default"


class RunRecord:
    """Writer-side handle of one run: its id, event writer and clock."""

    def __init__(self, ws: Workspace, run_id: str, writer: EventWriter, started: float) -> None:
        self.ws = ws
        self.run_id = run_id
        self.writer = writer
        self.started = started

    def set_status(self, status: str) -> None:
        self.writer.emit("status", status=status, at=now_iso())

    def end(self, status: str, error: dict[str, Any] | None = None, output_blob: str | None = None) -> None:
        self.writer.emit(
            "end", status=status, ended_at=now_iso(), duration_s=round(time.monotonic() - self.started, 3),
            error=error, output_blob=output_blob,
        )  # fmt: skip
        self.writer.close()

    def sync(self) -> None:
        """Flush and index this run now, so UIs see its state without waiting."""
        self.writer.flush()
        settle(self.ws, [self.run_id])

    def sync_quietly(self) -> None:
        """`sync` where a busy catalog must not fail the caller (the next reader indexes the run)."""
        self.writer.flush()
        settle_quietly(self.ws, [self.run_id])


def create_run(
    ws: Workspace,
    *,
    experiment: str | None,
    kind: str,
    notebook: str | None = None,
    notebook_hash: str | None = None,
    notebook_blob: str | None = None,
    kernel: str | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    sweep_id: str | None = None,
    pipeline_run: str | None = None,
    run_id: str | None = None,
    code_folder: Path | None = None,
) -> RunRecord:
    """Write the start event (with environment) plus params and tags; the run is `queued`."""
    experiment = validate_name(experiment or DEFAULT_EXPERIMENT, "experiment name")
    run_id = run_id or new_run_id()
    writer = writer_for(ws, run_id)
    env = environment.describe(code_folder or Path.cwd())
    writer.emit(
        "start", run_id=run_id, experiment=experiment, kind=kind, status="queued", notebook=notebook,
        notebook_hash=notebook_hash, notebook_blob=notebook_blob, created_at=now_iso(),
        creator=current_user(), host=env["host"], pid=os.getpid(), git_commit=env["git_commit"],
        git_dirty=env["git_dirty"], python_version=env["python_version"], packages=env["packages"],
        kernel=kernel, parent_run_id=parent_run_id, sweep_id=sweep_id, pipeline_run=pipeline_run,
    )  # fmt: skip
    for key, value in (params or {}).items():
        writer.emit("param", key=key, value=value)
    for key, value in (tags or {}).items():
        writer.emit("tag", key=str(key), value=str(value))
    return RunRecord(ws, run_id, writer, time.monotonic())

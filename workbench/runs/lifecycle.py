"""Starting and ending a run record: the one place that writes `start`, `status` and `end` events.

A notebook run records every parameter it runs with that is known up front: the values it was
given plus the parameters cell's literal defaults it kept, one `param` event each. Which of them
were given is the start event's `params_given` list (names), so a rerun injects only those and
leaves the defaults to the notebook, as the original did.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from workbench.identity import current_user
from workbench.names import validate_name
from workbench.runs import environment
from workbench.runs.events import EVENTS_FILE, EventWriter, now_iso, read_events, run_dir
from workbench.runs.ids import new_run_id
from workbench.runs.ingest import index_runs, writer_for
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
        """Flush and index this run now, so UIs see its state without waiting (see `index_runs`:
        a catalog that stays busy leaves it to the next reader)."""
        self.writer.flush()
        index_runs(self.ws, [self.run_id])

    def kernel_env(self) -> dict[str, str]:
        """Environment the run's kernel needs to read from where the run is recorded (a workspace
        folder: nothing more than the runner sets; a team server: `SpooledRunRecord` adds it)."""
        return {}


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
    params_given: list[str] | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    sweep_id: str | None = None,
    pipeline_run: str | None = None,
    run_id: str | None = None,
    code_folder: Path | None = None,
) -> RunRecord:
    """Write the start event (with environment) plus params and tags; the run is `queued`.

    `params_given`: which of `params` were given rather than defaults (notebook runs); None leaves
    it out of the start event (interactive runs, which have no parameters cell).
    """
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
        **({} if params_given is None else {"params_given": list(params_given)}),
    )  # fmt: skip
    for key, value in (params or {}).items():
        writer.emit("param", key=key, value=value)
    for key, value in (tags or {}).items():
        writer.emit("tag", key=str(key), value=str(value))
    return RunRecord(ws, run_id, writer, time.monotonic())


def given_params(ws: Workspace, run_id: str) -> dict[str, Any] | None:
    """The parameters run `run_id` was given, with the values it was given (not its defaults).

    The values are the first `param` event of each given name (written with the start event, so
    a later `wb.log_param` of the same name does not change them). None for a run recorded before
    `params_given` existed: it recorded only what it was given (plus anything it logged itself).
    """
    start: dict[str, Any] | None = None
    values: dict[str, Any] = {}
    for event in read_events(run_dir(ws, run_id) / EVENTS_FILE):
        if event.get("t") == "start":
            start = event
        elif event.get("t") == "param" and event.get("key") not in values:
            values[event["key"]] = event.get("value")
    if start is None or start.get("params_given") is None:
        return None
    return {name: values[name] for name in start["params_given"] if name in values}

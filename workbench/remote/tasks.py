"""A sweep's runs against a team server: self-contained tasks, for workers without a shared filesystem.

Each task carries everything its run needs: the notebook content (bytes) and name, the parameters,
the run's id, experiment, tags and sweep, and the server (URL, token, TLS option: `Remote`, from
the coordinator's resolved config). A worker (a local pool process or a Dask worker) writes the
notebook into a fresh temporary folder, executes it there as a remote run (`runs.run_place`: the
run folder in this machine's spool of that server, the kernel logging into it), waits for its
sender to have shipped it (up to `$WORKBENCH_SYNC_TIMEOUT`; what is left stays in the worker's
spool for 'workbench sync'), removes the folder and returns `{"run_id", "status", "sync"}`.

The token travels inside the task: the network between the coordinator, the Dask scheduler and its
workers must be trusted or TLS-secured (`tls://` with Dask's security options), as it is for any
Dask task's arguments.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.remote.config import Remote


@dataclass(frozen=True)
class RunTask:
    """One run of a sweep, as a worker needs it (picklable)."""

    remote: Remote
    run_id: str
    notebook_name: str
    source: bytes
    params: dict[str, Any]
    kernel: str | None
    experiment: str
    tags: dict[str, str] = field(default_factory=dict)
    sweep_id: str | None = None
    parent_run_id: str | None = None
    pipeline_run: str | None = None
    fast: bool = True
    parallel: int = 1

    def __repr__(self) -> str:  # never the token (Remote's repr hides it) nor the notebook bytes
        return f"RunTask(run_id={self.run_id!r}, notebook={self.notebook_name!r}, server={self.remote.url!r})"


def run_task(task: RunTask) -> dict[str, Any]:
    """Execute `task` in a fresh temporary folder as a run logged to its server (see the module doc)."""
    from workbench.remote.runs import RunPlace
    from workbench.remote.sender import run_sync_state, spool_workspace
    from workbench.runs.events import run_dir
    from workbench.runs.request import prepare, queue
    from workbench.runs.runner import execute

    place = RunPlace(spool_workspace(task.remote), task.remote)
    folder = Path(tempfile.mkdtemp(prefix="workbench-task-"))
    try:
        notebook = folder / Path(task.notebook_name).name
        notebook.write_bytes(task.source)
        prepared = prepare(notebook, task.params, allow_new_params=True, kernel_name=task.kernel, fast=task.fast)
        record = place.adopt(queue(place.ws, prepared, experiment=task.experiment, tags=task.tags,
                                   sweep_id=task.sweep_id, parent_run_id=task.parent_run_id,
                                   pipeline_run=task.pipeline_run, run_id=task.run_id))  # fmt: skip
        status = execute(place.ws, prepared, record, parallel=task.parallel)  # ends by waiting for the sender
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sync = run_sync_state(run_dir(place.ws, task.run_id), task.remote.url)["state"]
    return {"run_id": task.run_id, "status": status, "sync": sync}

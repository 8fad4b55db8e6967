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

The sweep itself is recorded on the server too (`ServerSweep`, `PUT /sweeps/{id}`): before its first
run starts (once the executor is ready), with its parameter sets and the notebook's content (a blob),
and again when it ends, with its status. `sweep --resume` asks the server which parameter sets have a
finished run of the sweep and runs only the others, from the notebook content the server keeps.

`python -m workbench.remote.tasks SPOOL RUN_ID` executes a run queued in a server's spool in a process
of its own (`rerun --background` against a server); the server's URL and token are in its environment.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.remote.config import Remote

if TYPE_CHECKING:
    from workbench.remote.client import Client
    from workbench.runs.request import PreparedRun
    from workbench.workspace import Workspace


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


#: A run a sweep still has to make: its parameters and the run it is linked to (`parent_run_id`).
Todo = tuple[dict[str, Any], str | None]


@dataclass
class ServerSweep:
    """A sweep against a team server: its record there, and its runs as `RunTask`s."""

    remote: Remote
    sweep_id: str
    experiment: str
    #: the notebook's path on the coordinator's machine (as recorded) and its content
    notebook: str
    source: bytes
    kernel: str | None
    #: how it was asked for (grid, random, seed, params, parallel, executor) and what its runs share
    #: (tags, fast, kernel, parent_run_id, pipeline_run)
    spec: dict[str, Any]
    param_sets: list[dict[str, Any]]

    @classmethod
    def new(cls, remote: Remote, sweep_id: str, experiment: str, prepared: list[PreparedRun],
            spec: dict[str, Any]) -> ServerSweep:  # fmt: skip
        """The sweep of `prepared` runs (one notebook, one kernel), not yet recorded."""
        first = prepared[0]
        param_sets = json.loads(json.dumps([p.params for p in prepared], default=str))  # as the server keeps them
        return cls(remote, sweep_id, experiment, str(first.notebook), first.source, first.kernel,
                   {**spec, "kernel": first.kernel}, param_sets)  # fmt: skip

    @classmethod
    def recorded(cls, remote: Remote, sweep_id: str) -> tuple[ServerSweep, dict[str, Any]]:
        """The sweep as the server recorded it (its notebook downloaded once, verified), and the record."""
        from workbench.errors import ValidationError

        client = _client(remote)
        info = client.get(f"/sweeps/{sweep_id}")
        if info.get("param_sets") is None or not info.get("notebook_blob"):
            raise ValidationError(f"Sweep {sweep_id} on {remote.url} was not started from a client, so its "
                                  "parameter sets and notebook are not recorded.",
                                  "Only sweeps started with a server configured resume from a client.")  # fmt: skip
        source = server_blob(remote, info["notebook_blob"], f"notebook of sweep {sweep_id}").read_bytes()
        spec = info["spec"]
        return cls(remote, sweep_id, info["experiment"], info["notebook"], source, spec.get("kernel"), spec,
                   info["param_sets"]), info  # fmt: skip

    def record(self, status: str) -> None:
        """Create or update the server's record (idempotent, so retried requests are harmless); a server
        that cannot be reached is no reason to stop a sweep whose runs wait in the spool: say so and go on."""
        from workbench.remote.client import ServerBusyError, ServerUnreachableError

        body = {"experiment": self.experiment, "notebook": self.notebook, "notebook_blob": self._blob_id(),
                "spec": self.spec, "param_sets": self.param_sets, "status": status}  # fmt: skip
        client = _client(self.remote)
        try:
            _upload_blob(client, self._blob_id(), self.source)  # first, so a record never names a missing blob
            client.request("PUT", f"/sweeps/{self.sweep_id}", json=json.loads(json.dumps(body, default=str)))
        except (ServerUnreachableError, ServerBusyError) as exc:
            print(f"workbench: sweep {self.sweep_id} could not be recorded as {status} on {self.remote.url} "
                  f"({exc.message}); its runs are logged as usual.", file=sys.stderr)  # fmt: skip

    def execute(self, executor: str, scheduler: str | None, parallel: int, todo: list[Todo], ws: Workspace,
                on_progress: Callable[[dict[str, int]], None] | None) -> dict[str, str]:  # fmt: skip
        """Run each `(params, parent_run_id)` of `todo` as a run of this sweep: `{run_id: status}`. The record
        says `running` once the executor is ready, then `finished`, `failed` (a run did not finish) or
        `interrupted` (the coordinator stopped)."""
        from workbench.runs.ids import new_run_id
        from workbench.sweep_executors import execute_tasks

        tags = {**self.spec.get("tags", {}), "sweep": self.sweep_id}
        tasks = [RunTask(self.remote, new_run_id(), Path(self.notebook).name, self.source, params, self.kernel,
                         self.experiment, tags, self.sweep_id, parent, self.spec.get("pipeline_run"),
                         bool(self.spec.get("fast", True)), parallel) for params, parent in todo]  # fmt: skip
        started: list[bool] = []

        def start() -> None:
            self.record("running")
            started.append(True)

        try:
            statuses = execute_tasks(executor, scheduler, parallel, tasks, ws, on_progress, on_start=start)
        except BaseException:
            if started:
                self.record("interrupted")
            raise
        ordered = {task.run_id: statuses.get(task.run_id, "killed") for task in tasks}
        self.record("finished" if all(s == "finished" for s in ordered.values()) else "failed")
        return ordered

    def unfinished(self, info: dict[str, Any]) -> tuple[list[str], list[Todo]]:
        """The runs of the record `info` that finished (one per parameter set), and each parameter set
        without one, with the run it replaces (its latest unfinished run, else the sweep's parent)."""
        finished: dict[int, str] = {}
        replaced: dict[int, str] = {}
        for run in info.get("runs", []):  # oldest first
            for index, params in enumerate(self.param_sets):
                if index in finished or any(run["params"].get(k, _MISSING) != v for k, v in params.items()):
                    continue
                if run["status"] == "finished":
                    finished[index] = run["run_id"]
                else:
                    replaced[index] = run["run_id"]
                break
        todo = [(params, replaced.get(index, self.spec.get("parent_run_id")))
                for index, params in enumerate(self.param_sets) if index not in finished]  # fmt: skip
        return [finished[index] for index in sorted(finished)], todo

    def _blob_id(self) -> str:
        import hashlib

        return hashlib.sha256(self.source).hexdigest() + ".ipynb"


_MISSING = object()


def _client(remote: Remote) -> Client:
    """The pooled HTTP client of `remote` (the one `RemoteStore` uses)."""
    from workbench.remote.dispatch import store_for

    return store_for(remote).client


def _upload_blob(client: Client, blob_id: str, data: bytes) -> None:
    """PUT a blob the server lacks (asked first with HEAD)."""
    if client.request("HEAD", f"/blobs/{blob_id}", ok=(404,)).status_code == 404:
        client.request("PUT", f"/blobs/{blob_id}", content=data, headers={"Content-Type": "application/octet-stream"})


def server_blob(remote: Remote, blob_id: str, label: str) -> Path:
    """The verified local copy of a blob of the server (downloaded once, cached by sha256)."""
    from workbench import blobs
    from workbench.remote.downloads import cached_download

    return cached_download(_client(remote), f"/blobs/{blob_id}", "blobs", blobs.expected_sha256(blob_id), label)


def given_params(remote: Remote, run_id: str) -> dict[str, Any] | None:
    """`runs.lifecycle.given_params` of a run on the server (None: it recorded only what it was given)."""
    return _client(remote).get(f"/runs/{run_id}/given-params")["params"]


def main(argv: list[str]) -> int:
    """`python -m workbench.remote.tasks SPOOL RUN_ID`: execute a run queued in the spool `SPOOL` of the
    server named by `$WORKBENCH_URL`/`$WORKBENCH_TOKEN`, logging it there (see the module doc)."""
    from workbench.remote.config import resolve
    from workbench.remote.runs import RunPlace
    from workbench.runs.cancellation import init_worker_process
    from workbench.runs.runner import execute, reopen
    from workbench.workspace import Workspace

    if len(argv) != 2:
        sys.stderr.write("usage: python -m workbench.remote.tasks SPOOL RUN_ID\n")
        return 2
    init_worker_process()
    remote = resolve()
    if remote is None:
        sys.stderr.write("workbench.remote.tasks: no server configured (set WORKBENCH_URL and WORKBENCH_TOKEN)\n")
        return 2
    place = RunPlace(Workspace(Path(argv[0])), remote)
    prepared, record, pins = reopen(place.ws, argv[1])
    status = execute(place.ws, prepared, place.adopt(record), pins=pins)  # ends by waiting for the sender
    return 0 if status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

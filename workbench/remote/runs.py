"""Where a run is recorded: the one place that decides between the local workspace and a team server.

With no server configured (`config.resolve` is None) nothing changes: the run is created in the
current workspace folder, as it always was. With one, the run is created in that server's spool
(`sender.spool_workspace`) and its events are shipped by the server's `Sender`; blobs of its
artifacts are stored in the spool and travel with it. Before anything is written, the server is
asked once whether this user may log runs (so a viewer is refused at the first `wb.log_*` call,
with nothing written); if it cannot be reached, the run is logged to the spool and sent later.

Notebook runs (`wb.run`, `workbench run`, a sweep's runs on a Dask worker) decide the same way
(`run_place`): they execute here, their run folder is in the spool, the kernel logs into it
(`injected_workspace`), and the end of the run waits for the sender as an interactive run's does.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.remote.config import Remote, resolve
from workbench.runs.lifecycle import RunRecord, create_run
from workbench.workspace import ENV_HOME, Workspace

if TYPE_CHECKING:
    from workbench.runs.store import Run

ENV_SYNC_TIMEOUT = "WORKBENCH_SYNC_TIMEOUT"
DEFAULT_SYNC_TIMEOUT = 30.0
PROBE_TIMEOUT = 5.0


def sync_timeout() -> float:
    """How long the end of a run waits for the server to have all of it: `$WORKBENCH_SYNC_TIMEOUT`, else 30 s."""
    try:
        return max(0.0, float(os.environ.get(ENV_SYNC_TIMEOUT) or DEFAULT_SYNC_TIMEOUT))
    except ValueError:
        return DEFAULT_SYNC_TIMEOUT


class SpooledRunRecord(RunRecord):
    """A run recorded in a server's spool: syncing means nudging the sender, and after the end,
    waiting (up to `sync_timeout()`) until the server has everything."""

    def __init__(self, record: RunRecord, remote: Remote) -> None:
        super().__init__(record.ws, record.run_id, record.writer, record.started)
        from workbench.remote.sender import sender_for

        self.remote = remote
        self.sender = sender_for(remote)
        self.ended = False
        self.sender.track(self.run_id)

    def end(self, status: str, error: dict[str, Any] | None = None, output_blob: str | None = None) -> None:
        super().end(status, error, output_blob)
        self.ended = True
        self.sender.untrack(self.run_id)

    def kernel_env(self) -> dict[str, str]:
        """The server's URL and token, so `wb.load_snapshot` and the other reads in the notebook go to
        the server this run is recorded on (`remote.dispatch`), wherever the kernel runs."""
        return remote_env(self.remote)

    def sync(self) -> None:
        self.writer.flush()
        if not self.ended:
            self.sender.nudge()
            return
        if not self.sender.flush(sync_timeout()):
            from workbench.remote.sender import sync_state

            state = sync_state(self.run_id)
            print(f"workbench: run {self.run_id} is still syncing to {self.remote.url} "
                  f"({state['sent_bytes']:,} of {state['bytes']:,} bytes sent); its events stay in {state['spool']} "
                  "and are sent by the next process logging to this server, or by 'workbench sync'.",
                  file=sys.stderr)  # fmt: skip


def remote_env(remote: Remote) -> dict[str, str]:
    """The environment variables that make a child process (a kernel, a background worker) use `remote`."""
    from workbench.remote.config import ENV_CA_BUNDLE, ENV_TOKEN, ENV_URL

    env = {ENV_URL: remote.url, ENV_TOKEN: remote.token}
    if isinstance(remote.verify, str):
        env[ENV_CA_BUNDLE] = remote.verify
    return env


def _probe(remote: Remote, run_id: str) -> None:
    """Raise if the server refuses this user logging runs; an unreachable server is no refusal."""
    from workbench.remote.client import Client, ServerBusyError, ServerUnreachableError

    with Client(remote, timeout=PROBE_TIMEOUT, retries=0) as client:
        try:
            client.request("GET", f"/runs/{run_id}/events/offset")
        except (ServerUnreachableError, ServerBusyError):
            pass


def _say_where(remote: Remote, run_id: str) -> None:
    """A saved login sends runs to the server even in a folder with a workspace of its own, whose
    `wb.runs()` will not list them yet: say so once, rather than let the run look lost."""
    from workbench.workspace import resolve_home

    local = resolve_home(None)
    if remote.source == "workbench login" and local is not None:
        print(f"workbench: run {run_id} is logged to {remote.url} (workbench login), not to the workspace "
              f"{local}; 'workbench logout' logs here again.", file=sys.stderr)  # fmt: skip


def interactive_run(experiment: str) -> RunRecord:
    """A new interactive run (status `queued`), in the local workspace or the configured server's spool."""
    remote = resolve()
    if remote is None:
        from workbench.workspace import current_workspace

        return create_run(current_workspace(), experiment=experiment, kind="interactive")
    from workbench.remote.sender import spool_workspace
    from workbench.runs.ids import new_run_id

    run_id = new_run_id()
    _probe(remote, run_id)
    _say_where(remote, run_id)
    record = create_run(spool_workspace(remote), experiment=experiment, kind="interactive", run_id=run_id)
    return SpooledRunRecord(record, remote)


@dataclass(frozen=True)
class RunPlace:
    """Where a notebook run is recorded: a workspace folder, or the spool of `remote`."""

    ws: Workspace
    remote: Remote | None = None

    def adopt(self, record: RunRecord) -> RunRecord:
        """The record a runner ends the run with (for a server: one that waits for the sender)."""
        return record if self.remote is None else SpooledRunRecord(record, self.remote)

    def get_run(self, run_id: str) -> Run:
        """The run as recorded: from the catalog, or as the server has it (the spool's view, with status
        `syncing`, while the server lacks part of a run logged from this machine)."""
        from workbench.runs.store import get_run

        if self.remote is None:
            return get_run(run_id, self.ws)
        from workbench.remote.client import Client, RemoteError
        from workbench.remote.sender import run_sync_state
        from workbench.runs.events import run_dir

        here = run_dir(self.ws, run_id).is_dir()  # not for a run a Dask worker executed
        if here and run_sync_state(run_dir(self.ws, run_id), self.remote.url)["state"] != "synced":
            return spooled_run(self.ws, run_id)
        try:
            with Client(self.remote, timeout=PROBE_TIMEOUT) as client:
                return run_from_dict(client.get(f"/runs/{run_id}"))
        except RemoteError:  # unreachable, or a run it never heard of (its Dask worker died first)
            return spooled_run(self.ws, run_id)


def run_place(ws: Workspace | None = None) -> RunPlace:
    """Where a new notebook run goes: `ws` if given, else the configured server's spool (asked first
    whether this user may log runs), else the current workspace."""
    if ws is not None:
        return RunPlace(ws)
    remote = resolve()
    if remote is None:
        from workbench.workspace import current_workspace

        return RunPlace(current_workspace())
    from workbench.remote.sender import spool_workspace
    from workbench.runs.ids import new_run_id

    _probe(remote, new_run_id())
    return RunPlace(spool_workspace(remote), remote)


def injected_workspace(run_id: str) -> Workspace:
    """The workspace of the run a runner injected into this kernel: `$WORKBENCH_RUN_HOME` when it
    holds the run's folder (a workspace, or a server's spool), else the current one."""
    from workbench.runs.events import ENV_RUN_HOME
    from workbench.workspace import current_workspace

    for home in (os.environ.get(ENV_RUN_HOME), os.environ.get(ENV_HOME)):
        if home and (Path(home) / "runs" / run_id).is_dir():
            return Workspace(Path(home).expanduser().absolute())
    return current_workspace()


def run_from_dict(data: dict[str, Any]) -> Run:
    """A `Run` from its `to_dict()` (the server's answer)."""
    from datetime import datetime

    from workbench.runs.store import Artifact, Run

    fields = dict(data)
    for key in ("created_at", "started_at", "ended_at"):
        fields[key] = datetime.fromisoformat(fields[key]) if fields.get(key) else None
    fields["artifacts"] = [Artifact(**a) for a in fields.get("artifacts") or []]
    known = Run.__dataclass_fields__
    return Run(**{key: value for key, value in fields.items() if key in known})


def spooled_run(ws: Workspace, run_id: str) -> Run:
    """A run the server does not have yet, as its spooled events say, with status `syncing` (`unknown`
    when this machine has none of it either)."""
    from workbench.runs.events import EVENTS_FILE, read_events, run_dir
    from workbench.runs.ingest import fold

    path = run_dir(ws, run_id) / EVENTS_FILE
    item = (fold(read_events(path)) if path.is_file() else None) or {}
    run = dict(item.get("run") or {"run_id": run_id})
    metrics: dict[str, float | None] = {}
    for key, _step, value, _at in item.get("metrics", []):
        metrics[key] = value
    artifacts = [{"name": a["name"], "kind": a.get("kind"), "blob": a.get("blob"), "size": a.get("size"),
                  "meta": a.get("meta")} for a in (item.get("artifacts") or {}).values()]  # fmt: skip
    defaults = {key: None for key in ("experiment", "kind", "notebook", "notebook_hash", "notebook_blob",
                                      "output_blob", "created_at", "started_at", "ended_at", "duration_s",
                                      "creator", "host", "git_commit", "git_dirty", "python_version", "kernel",
                                      "error", "parent_run_id", "sweep_id")}  # fmt: skip
    inputs = [f"{name}@{version}" for name, version in item.get("inputs", [])]
    status = "syncing" if item else "unknown"
    return run_from_dict({**defaults, **run, "packages": run.get("packages") or {}, "status": status,
                          "params": item.get("params", {}), "tags": item.get("tags", {}), "metrics": metrics,
                          "artifacts": artifacts, "inputs": inputs})  # fmt: skip

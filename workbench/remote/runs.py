"""Where an interactive run is recorded: the one place that decides between the local workspace
and a team server.

With no server configured (`config.resolve` is None) nothing changes: the run is created in the
current workspace folder, as it always was. With one, the run is created in that server's spool
(`sender.spool_workspace`) and its events are shipped by the server's `Sender`; blobs of its
artifacts are stored in the spool and travel with it. Before anything is written, the server is
asked once whether this user may log runs (so a viewer is refused at the first `wb.log_*` call,
with nothing written); if it cannot be reached, the run is logged to the spool and sent later.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from workbench.remote.config import Remote, resolve
from workbench.runs.lifecycle import RunRecord, create_run

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

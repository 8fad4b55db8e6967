"""Cancelling a run while it executes: the cancel file, SIGTERM, and the processes that execute runs.

A queued run is cancelled by a `cancel` file in its folder (`cancel_in_folder`, behind
`launch.cancel_run`, writes it); a running one also gets SIGTERM sent to the process executing it.
That process's handler only kills the kernels and sets a flag: papermill then sees a dead kernel and
returns normally, so the run still ends with its executed notebook and a `killed` status instead of
an orphaned kernel. A run executing in the very process asked to cancel it (a foreground run whose
sender hears of a cancel from the team server, `remote.sender`) gets the handler's effect directly:
SIGTERM to itself would end a process that has no handler.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

CANCEL_FILE = "cancel"
_cancel_requested = False


def init_worker_process() -> None:
    """Set up a process that executes queued runs (background worker, sweep pool worker)."""
    from workbench.startup import skip_slow_optional_imports

    skip_slow_optional_imports()
    install_cancel_handler()


def install_cancel_handler() -> None:
    """Make SIGTERM cancel the run this process executes (see module doc)."""

    def handler(signum: int, frame: Any) -> None:
        cancel_this_process()

    signal.signal(signal.SIGTERM, handler)


def cancel_this_process() -> None:
    """Cancel the run this process executes: remember it, and kill its kernels (see the module doc)."""
    global _cancel_requested
    _cancel_requested = True
    kill_children()


def kill_children() -> None:
    """Kill this process's children and the kernels it forked through a fork server (not its children)."""
    import psutil

    from workbench.kernels.provisioner import FORKED_KERNELS

    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass
    for pid in list(FORKED_KERNELS):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def clear_cancel_request() -> None:
    """Forget a SIGTERM received for an earlier run: this process starts executing another one."""
    global _cancel_requested
    _cancel_requested = False


def cancelled(folder: Path) -> bool:
    """Whether the run in `folder` was cancelled: SIGTERM to this process, or its cancel file."""
    return _cancel_requested or (folder / CANCEL_FILE).exists()


def cancel_in_folder(folder: Path, signal_process: bool = True) -> bool:
    """Ask the run in `folder` to stop; False if it had already ended (`launch.cancel_run`, for a run folder).

    The cancel file stops a queued run before it starts; with `signal_process`, a running one's
    executing process on this host is also told (SIGTERM, or directly when it is this process). A
    team server passes False for a run a client executes: that client's sender hears of the file."""
    from workbench.errors import NotFoundError
    from workbench.runs.events import EVENTS_FILE, read_events
    from workbench.runs.ingest import FINAL_STATUSES, fold

    item = fold(read_events(folder / EVENTS_FILE))
    if item is None:
        raise NotFoundError(f"No run {folder.name}.", "List runs with 'workbench runs list'.")
    run = item["run"]
    if run["status"] in FINAL_STATUSES:
        return False
    (folder / CANCEL_FILE).touch()
    if signal_process and run["status"] == "running" and run.get("host") == socket.gethostname() and run.get("pid"):
        _stop_process(int(run["pid"]))
    return True


def _stop_process(pid: int) -> None:
    if pid == os.getpid():
        cancel_this_process()
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass

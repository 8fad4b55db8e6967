"""Cancelling a run while it executes: the cancel file, SIGTERM, and the processes that execute runs.

A queued run is cancelled by a `cancel` file in its folder (`launch.cancel_run` writes it); a
running one also gets SIGTERM sent to the process executing it. That process's handler only kills
the kernels and sets a flag: papermill then sees a dead kernel and returns normally, so the run
still ends with its executed notebook and a `killed` status instead of an orphaned kernel.
"""

from __future__ import annotations

import os
import signal
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
        global _cancel_requested
        _cancel_requested = True
        kill_children()

    signal.signal(signal.SIGTERM, handler)


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

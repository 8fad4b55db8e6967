"""Executing one notebook with papermill as a tracked run.

A run is first prepared and queued (`request`: every check that can fail before a kernel starts,
then the run's record and folder). `execute` then writes the run's start, lets papermill execute
the notebook with the run id and workspace in the kernel's environment, so `import workbench as
wb` inside the notebook logs into this run, and ends the run whatever happens (`outcome`): a
success, a failing cell, a dead kernel, a cancel (`cancellation`).

The names other modules import from here (`prepare`, `queue`, `reopen`, `CANCEL_FILE`,
`kernel_manager_with_env`, ...) are re-exported from the modules that now hold them.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from workbench.autologging import ENV_AUTOLOG
from workbench.kernels.manager import kernel_manager_with_env
from workbench.kernels.readiness import KernelStartError, kernel_start_timeout
from workbench.runs.cancellation import (
    CANCEL_FILE,
    cancelled,
    clear_cancel_request,
    init_worker_process,
    install_cancel_handler,
    kill_children,
)
from workbench.runs.events import ENV_PINS, ENV_RUN_HOME, ENV_RUN_ID, Heartbeat, now_iso, run_dir
from workbench.runs.kernel_choice import check_kernel, execution_metadata, notebook_language, resolve_kernel
from workbench.runs.lifecycle import RunRecord
from workbench.runs.outcome import CANCELLED, INTERRUPTED, error_from, finish_writing, record_outcome
from workbench.runs.request import REQUEST_FILE, PreparedRun, prepare, queue, reopen
from workbench.workspace import ENV_HOME, Workspace

__all__ = [
    "CANCEL_FILE", "REQUEST_FILE", "THREAD_VARS", "PreparedRun", "check_kernel", "execute", "execute_queued",
    "execution_metadata", "init_worker_process", "install_cancel_handler", "kernel_manager_with_env",
    "kill_children", "notebook_language", "prepare", "queue", "reopen", "resolve_kernel", "thread_env",
    "usable_cores",
]  # fmt: skip

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's or taskset's share),
    not the machine's count: sizing thread pools by the latter oversubscribes a restricted process."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def thread_env(parallel: int) -> dict[str, str]:
    """BLAS/OpenMP thread budget for one of `parallel` concurrent kernels: about cores/parallel."""
    threads = max(1, usable_cores() // max(1, parallel))
    return {var: str(threads) for var in THREAD_VARS}


def execute(
    ws: Workspace,
    prepared: PreparedRun,
    record: RunRecord,
    *,
    parallel: int = 1,
    pins: dict[str, int] | None = None,
    kernel_manager_factory: Callable[..., type] = kernel_manager_with_env,
    index: bool = True,
) -> str:
    """Execute a queued run to a final state; returns the status (`index`: see `outcome.finish_writing`)."""
    import json

    folder = run_dir(ws, record.run_id)
    source_path = folder / "source.ipynb"
    if not source_path.is_file():
        source_path.write_bytes(prepared.source)
    env = {ENV_RUN_ID: record.run_id, ENV_RUN_HOME: str(ws.root), **thread_env(parallel)}
    if ws.config_path.is_file():  # a workspace; a team server's spool is none: snapshots resolve as usual
        env[ENV_HOME] = str(ws.root)
    env.update(record.kernel_env())
    if pins:
        env[ENV_PINS] = json.dumps(pins)
    env[ENV_AUTOLOG] = "1" if prepared.autolog else "0"
    clear_cancel_request()
    if cancelled(folder):
        record.end("killed", CANCELLED)
        finish_writing(record, index)
        return "killed"
    heartbeat = Heartbeat(folder).start()
    record.writer.emit("status", status="running", at=now_iso(), pid=os.getpid(), host=socket.gethostname())
    record.writer.flush()
    if index:  # the catalog (and its audit log) learns of the start while the kernel starts up
        threading.Thread(target=record.sync, name="workbench-index-start", daemon=True).start()
    status, error = "finished", None
    try:
        _execute_with_retry(prepared, folder, env, kernel_manager_factory)
    except KeyboardInterrupt:
        status, error = "killed", INTERRUPTED
    except Exception as exc:  # a failing cell, a dead kernel, a kernel that would not start
        status, error = ("killed", CANCELLED) if cancelled(folder) else ("failed", error_from(exc))
    finally:
        heartbeat.stop()
    record_outcome(ws, record, folder, status, error, index)
    return status


def _execute_with_retry(prepared: PreparedRun, folder: Path, env: dict[str, str],
                        kernel_manager_factory: Callable[..., type]) -> None:  # fmt: skip
    """Execute the notebook; a kernel that does not start is tried once more, as a plain kernel.

    The retry does without the fork server (the usual suspect when a fast kernel fails) and, on a
    machine that was only briefly overloaded, usually just works. A second failure is the run's error.
    """
    try:
        _papermill(prepared, folder, env, kernel_manager_factory(env, folder / "kernel.log", prepared.preload))
    except KernelStartError as exc:
        if cancelled(folder):
            raise
        with open(folder / "kernel.log", "a") as log:
            log.write(f"[workbench] {exc.message} Trying once more with a plain kernel.\n")
        _papermill(prepared, folder, env, kernel_manager_factory(env, folder / "kernel.log", None))


def _papermill(prepared: PreparedRun, folder: Path, env: dict[str, str], manager: type) -> None:
    """One papermill execution into the run folder (notebook outputs to stdout.txt/stderr.txt)."""
    import papermill

    workdir = prepared.notebook.parent  # relative paths in the notebook resolve as in JupyterLab
    with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
        papermill.execute_notebook(
            str(_input_path(prepared, folder)), str(folder / "executed.ipynb"), parameters=prepared.params,
            kernel_name=prepared.kernel, language=prepared.language, cwd=str(workdir) if workdir.is_dir() else None,
            progress_bar=False, log_output=False, stdout_file=out, stderr_file=err, kernel_manager_class=manager,
            start_timeout=kernel_start_timeout(),
        )  # fmt: skip


def _input_path(prepared: PreparedRun, folder: Path) -> Path:
    """The notebook papermill executes: the stored source, or a copy with the kernel metadata it lacked.

    The source itself (and its hash) stays as the user wrote it; the executed notebook names its kernel.
    """
    source_path = folder / "source.ipynb"
    if not prepared.metadata:
        return source_path
    import nbformat

    nb = nbformat.reads(source_path.read_text(), as_version=4)
    nb.metadata.update(prepared.metadata)
    filled = folder / "input.ipynb"
    nbformat.write(nb, str(filled))
    return filled


def execute_queued(home: str, run_id: str, parallel: int = 1, index: bool = True) -> str:
    """Execute a queued run in this process (sweep pools and Dask workers call this)."""
    from workbench.workspace import open_workspace

    ws = open_workspace(home)
    prepared, record, pins = reopen(ws, run_id)
    return execute(ws, prepared, record, parallel=parallel, pins=pins, index=index)

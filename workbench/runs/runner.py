"""Executing one notebook with papermill as a tracked run.

The runner validates everything it can before a kernel starts (notebook, kernel, parameters,
experiment name), writes the run's start event, then lets papermill execute the notebook with
the run id and workspace in the kernel's environment, so `import workbench as wb` inside the
notebook logs into this run. Whatever happens — success, a failing cell, a dead kernel, a
cancel — the run ends with a final status, the executed notebook, stdout/stderr and, for
failures, the failing cell and its traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench import blobs
from workbench.errors import WorkbenchError
from workbench.runs.events import ENV_PINS, ENV_RUN_ID, Heartbeat, now_iso, run_dir
from workbench.runs.ingest import writer_for
from workbench.runs.lifecycle import RunRecord, create_run
from workbench.runs.params import read_notebook, validate_params
from workbench.workspace import ENV_HOME, Workspace

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


CANCEL_FILE = "cancel"
_cancel_requested = False


def init_worker_process() -> None:
    """Set up a process that executes queued runs (background worker, sweep pool worker)."""
    from workbench.startup import skip_slow_optional_imports

    skip_slow_optional_imports()
    install_cancel_handler()


def install_cancel_handler() -> None:
    """Make SIGTERM cancel the run this process executes.

    The handler only kills the kernel processes (children of this process) and sets a flag:
    papermill then sees a dead kernel and returns normally, so the run still ends with its
    executed notebook and a `killed` status instead of an orphaned kernel.
    """

    def handler(signum: int, frame: Any) -> None:
        global _cancel_requested
        _cancel_requested = True
        kill_children()

    signal.signal(signal.SIGTERM, handler)


def kill_children() -> None:
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


def _cancelled(folder: Path) -> bool:
    return _cancel_requested or (folder / CANCEL_FILE).exists()


def thread_env(parallel: int) -> dict[str, str]:
    """BLAS/OpenMP thread budget for one of `parallel` concurrent kernels: about cores/parallel."""
    threads = max(1, (os.cpu_count() or 1) // max(1, parallel))
    return {var: str(threads) for var in THREAD_VARS}


def kernel_manager_with_env(
    extra_env: dict[str, str], log_path: Path | None = None, preload: list[str] | None = None, base: type | None = None
) -> type:
    """A kernel manager class whose kernels get `extra_env` (thread-safe: no os.environ edits).

    The kernel process's own stdout/stderr (not the notebook's outputs) go to `log_path`, so
    kernel chatter lands in the run folder instead of the user's terminal. Its clients are
    `ReadyKernelClient`s (no fixed pause at start-up).
    """
    from traitlets import DottedObjectName, Type

    if base is None:
        from jupyter_client.manager import AsyncKernelManager as base  # noqa: N813

    class EnvKernelManager(base):  # type: ignore[misc, valid-type]
        client_class = DottedObjectName("workbench.kernels.readiness.ReadyKernelClient")
        client_factory = Type(klass="workbench.kernels.readiness.ReadyKernelClient")

        async def _async_pre_start_kernel(self, **kw: Any) -> Any:
            if preload is not None and self.provisioner is None:
                self._kernel_spec = _with_fork_server(self.kernel_spec, preload)
            env = dict(kw.pop("env", None) or os.environ)
            env.update(extra_env)
            kw["env"] = env
            if log_path is not None:
                self._workbench_log = open(log_path, "ab")  # noqa: SIM115  (closed once the kernel has it)
                kw.setdefault("stdout", self._workbench_log)
                kw.setdefault("stderr", self._workbench_log)
            return await super()._async_pre_start_kernel(**kw)

        async def _async_wait(self, pollinterval: float = 0.1) -> None:
            """Notice a kernel's exit within 10 ms rather than jupyter_client's 100 ms: a forked
            kernel exits a few milliseconds after its shutdown reply, and every run waits for it."""
            await super()._async_wait(pollinterval=min(pollinterval, 0.01))

        async def _async_post_start_kernel(self, **kw: Any) -> None:
            log = getattr(self, "_workbench_log", None)
            if log is not None:
                log.close()
            await super()._async_post_start_kernel(**kw)

    return EnvKernelManager


def _with_fork_server(spec: Any, preload: list[str]) -> Any:
    """A copy of the kernel spec that asks for the fork-server provisioner."""
    from jupyter_client.kernelspec import KernelSpec

    from workbench.kernels.provisioner import NAME

    data = spec.to_dict()
    data["metadata"] = {**(data.get("metadata") or {}),
                        "kernel_provisioner": {"provisioner_name": NAME, "config": {"preload": preload}}}  # fmt: skip
    copy = KernelSpec(**data)
    copy.resource_dir = spec.resource_dir
    return copy


def check_kernel(name: str) -> str:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel as exc:
        available = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise WorkbenchError(
            f"Kernel {name!r} is not installed (available: {available}).",
            "Install it (e.g. python -m ipykernel install --user) or pass --kernel.",
        ) from exc
    return name


@dataclass
class PreparedRun:
    """A validated run request, ready to execute."""

    notebook: Path
    source: bytes
    params: dict[str, Any]
    kernel: str
    #: modules for a fork-server kernel (`workbench.kernels`); None runs a normal kernel
    preload: list[str] | None = None


def prepare(
    notebook: str | os.PathLike[str],
    params: dict[str, Any] | None = None,
    *,
    allow_new_params: bool = False,
    from_text: bool = False,
    kernel_name: str | None = None,
    source: bytes | None = None,
    fast: bool = False,
    extra_preload: list[str] | None = None,
) -> PreparedRun:
    """Every check that can fail before a kernel starts.

    `source` executes stored notebook content (a rerun) instead of the file's current content;
    `notebook` then only says where it lived (its folder is the working directory).
    """
    path = Path(notebook).expanduser().absolute()
    if source is None:
        nb = read_notebook(path)
        source = path.read_bytes()
    else:
        import nbformat

        nb = nbformat.reads(source.decode(), as_version=4)
    clean = validate_params(nb, params, allow_new=allow_new_params, from_text=from_text, label=path.name)
    kernel = kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    preload = None
    if fast and nb.metadata.get("kernelspec", {}).get("language", "python") == "python":
        from workbench.kernels.preload import preload_list

        preload = preload_list(nb, extra_preload)
    return PreparedRun(path, source, clean, check_kernel(kernel), preload)


REQUEST_FILE = "request.json"


def queue(
    ws: Workspace, prepared: PreparedRun, *, experiment: str | None = None, tags: dict[str, str] | None = None,
    parent_run_id: str | None = None, sweep_id: str | None = None, pipeline_run: str | None = None,
    pins: dict[str, int] | None = None,
) -> RunRecord:  # fmt: skip
    """Create the run record (`queued`) so UIs see it before it starts.

    The run folder also gets everything needed to execute it in another process (a background
    worker, a sweep pool, a Dask worker): the notebook content and a `request.json`.
    """
    import json

    blob_id = blobs.put_bytes(ws, prepared.source, ".ipynb")
    record = create_run(
        ws, experiment=experiment, kind="notebook", notebook=str(prepared.notebook),
        notebook_hash=hashlib.sha256(prepared.source).hexdigest(), notebook_blob=blob_id,
        kernel=prepared.kernel, params=prepared.params, tags=tags, parent_run_id=parent_run_id,
        sweep_id=sweep_id, pipeline_run=pipeline_run, code_folder=prepared.notebook.parent,
    )  # fmt: skip
    folder = run_dir(ws, record.run_id)
    (folder / "source.ipynb").write_bytes(prepared.source)
    request = {"notebook": str(prepared.notebook), "params": prepared.params, "kernel": prepared.kernel,
               "pins": pins or {}, "preload": prepared.preload}  # fmt: skip
    (folder / REQUEST_FILE).write_text(json.dumps(request, default=str))
    record.writer.close()  # flushed; readers index it from its pending marker (no flusher thread while queued)
    return record


def reopen(ws: Workspace, run_id: str) -> tuple[PreparedRun, RunRecord, dict[str, int]]:
    """The prepared request and record of a queued run, to execute it in this process."""
    import json
    import time

    folder = run_dir(ws, run_id)
    try:
        request = json.loads((folder / REQUEST_FILE).read_text())
        source = (folder / "source.ipynb").read_bytes()
    except FileNotFoundError as exc:
        raise WorkbenchError(f"Run {run_id} was never queued in {ws.root}.") from exc
    prepared = PreparedRun(Path(request["notebook"]), source, request["params"], request["kernel"],
                           request.get("preload"))  # fmt: skip
    record = RunRecord(ws, run_id, writer_for(ws, run_id), time.monotonic())
    return prepared, record, {k: int(v) for k, v in request.get("pins", {}).items()}


def _sync_quietly(record: RunRecord, index: bool = True) -> None:
    """Flush the run's events and (with `index`) index it in the catalog now.

    Without `index` the run stays pending and whoever reads next indexes it: sweep workers leave
    that to the sweep's coordinator, so the catalog write is not between two of their runs.
    """
    if index:
        record.sync_quietly()
    else:
        record.writer.flush()


_CANCELLED = {"cell_index": None, "ename": "Cancelled", "evalue": "The run was cancelled.", "traceback": []}


def _error_from(exc: BaseException) -> dict[str, Any]:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return {
            "cell_index": exc.cell_index, "exec_count": exc.exec_count, "ename": exc.ename,
            "evalue": exc.evalue, "traceback": [_ANSI.sub("", line) for line in exc.traceback],
            "source": exc.source,
        }  # fmt: skip
    import traceback

    return {
        "cell_index": None, "ename": type(exc).__name__, "evalue": str(exc),
        "traceback": traceback.format_exception_only(type(exc), exc),
    }  # fmt: skip


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
    """Execute a queued run to a final state; returns the status (`index`: see `_sync_quietly`)."""
    import json

    import papermill

    folder = run_dir(ws, record.run_id)
    source_path = folder / "source.ipynb"
    if not source_path.is_file():
        source_path.write_bytes(prepared.source)
    output_path = folder / "executed.ipynb"
    env = {ENV_RUN_ID: record.run_id, ENV_HOME: str(ws.root), **thread_env(parallel)}
    if pins:
        env[ENV_PINS] = json.dumps(pins)
    global _cancel_requested
    _cancel_requested = False
    if _cancelled(folder):
        record.end("killed", _CANCELLED)
        _sync_quietly(record, index)
        return "killed"
    heartbeat = Heartbeat(folder).start()
    record.writer.emit("status", status="running", at=now_iso(), pid=os.getpid(), host=socket.gethostname())
    record.writer.flush()
    if index:  # the catalog (and its audit log) learns of the start while the kernel starts up
        threading.Thread(target=record.sync_quietly, name="workbench-index-start", daemon=True).start()
    status, error = "finished", None
    stdout_path, stderr_path = folder / "stdout.txt", folder / "stderr.txt"
    workdir = prepared.notebook.parent  # relative paths in the notebook resolve as in JupyterLab
    manager = kernel_manager_factory(env, folder / "kernel.log", prepared.preload)
    try:
        with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
            papermill.execute_notebook(
                str(source_path), str(output_path), parameters=prepared.params, kernel_name=prepared.kernel,
                cwd=str(workdir) if workdir.is_dir() else None, progress_bar=False, log_output=False,
                stdout_file=out, stderr_file=err, kernel_manager_class=manager,
            )  # fmt: skip
    except KeyboardInterrupt:
        status, error = "killed", {**_CANCELLED, "ename": "KeyboardInterrupt", "evalue": "Interrupted."}
    except Exception as exc:  # a failing cell, a dead kernel, a kernel that would not start
        status, error = ("killed", _CANCELLED) if _cancelled(folder) else ("failed", _error_from(exc))
    finally:
        heartbeat.stop()
    output_blob = blobs.put_file(ws, output_path, ".ipynb") if output_path.is_file() else None
    for path in (stdout_path, stderr_path):
        if path.is_file() and path.stat().st_size:
            blob_id = blobs.put_file(ws, path, ".txt")
            record.writer.emit("artifact", name=path.stem, kind="text", blob=blob_id,
                               size=path.stat().st_size, meta=None, at=now_iso())  # fmt: skip
    record.end(status, error, output_blob)
    _sync_quietly(record, index)
    return status


def execute_queued(home: str, run_id: str, parallel: int = 1, index: bool = True) -> str:
    """Execute a queued run in this process (sweep pools and Dask workers call this)."""
    from workbench.workspace import open_workspace

    ws = open_workspace(home)
    prepared, record, pins = reopen(ws, run_id)
    return execute(ws, prepared, record, parallel=parallel, pins=pins, index=index)

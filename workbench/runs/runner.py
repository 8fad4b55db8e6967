"""Executing one notebook with papermill as a tracked run.

The runner validates everything it can before a kernel starts (notebook, kernel, parameters,
experiment name), writes the run's start event, then lets papermill execute the notebook with
the run id and workspace in the kernel's environment, so `import workbench as wb` inside the
notebook logs into this run. Whatever happens — success, a failing cell, a dead kernel, a
cancel — the run ends with a final status, the executed notebook, stdout/stderr and, for
failures, the failing cell and its traceback.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import blobs
from workbench.errors import WorkbenchError
from workbench.kernels.readiness import KernelStartError, kernel_start_timeout
from workbench.runs.events import ENV_PINS, ENV_RUN_ID, Heartbeat, now_iso, run_dir
from workbench.runs.ingest import writer_for
from workbench.runs.lifecycle import RunRecord, create_run
from workbench.runs.params import literal_defaults, read_notebook, validate_params
from workbench.workspace import ENV_HOME, Workspace

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Seconds a started kernel gets to answer its first request (papermill's default is 60 s).





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


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's or taskset's share),
    not the machine's count: sizing thread pools by the latter oversubscribes a restricted process."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def thread_env(parallel: int) -> dict[str, str]:
    """BLAS/OpenMP thread budget for one of `parallel` concurrent kernels: about cores/parallel."""
    threads = max(1, usable_cores() // max(1, parallel))
    return {var: str(threads) for var in THREAD_VARS}


def kernel_manager_with_env(
    extra_env: dict[str, str], log_path: Path | None = None, preload: list[str] | None = None, base: type | None = None
) -> type:
    """A kernel manager class whose kernels get `extra_env` (thread-safe: no os.environ edits).

    The kernel process's own stdout/stderr (not the notebook's outputs) go to `log_path`, so
    kernel chatter lands in the run folder instead of the user's terminal. Its clients are
    `ReadyKernelClient`s (no fixed pause at start-up) that tolerate a slow first reply.
    """
    from traitlets import DottedObjectName, Type

    _quiet_papermill_log()
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

        async def _async_interrupt_kernel(self) -> None:
            """No SIGINT on the way to a shutdown (jupyter_client sends one before every shutdown request).

            The kernel is idle by then (the notebook ended, or failed), and ipykernel handles the
            shutdown request on its control thread anyway; a SIGINT that lands while it still finishes
            a message only makes it log "KeyboardInterrupt caught in kernel." at the end of the run.
            A kernel still busy is stopped all the same: jupyter_client terminates it after its wait.
            """
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

        async def _async_post_start_kernel(self, **kw: Any) -> None:
            log = getattr(self, "_workbench_log", None)
            if log is not None:
                log.close()
            await super()._async_post_start_kernel(**kw)

    return EnvKernelManager


@functools.cache
def _quiet_papermill_log() -> None:
    """Keep papermill's (and nbclient's) log records off the terminal when nobody configured logging.

    Python prints unhandled WARNING+ records to stderr: a kernel that did not start showed up as
    "Error occurred while starting new kernel client ..." once per attempt, beside the run's own
    one-line error. Whatever they say is recorded with the run; a configured handler still gets them.
    """
    import logging

    logging.getLogger("papermill").addHandler(logging.NullHandler())


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
    """The installed kernel that `name` means, as jupyter_client resolves it; refused up front if none.

    A `KernelManager` is asked rather than the spec manager alone: it maps the old generic name
    `python` to the native kernel (`python3`), as papermill and JupyterLab do when they start one.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name=name)
    try:
        manager.kernel_spec  # noqa: B018  (raises NoSuchKernel)
    except NoSuchKernel as exc:
        available = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise WorkbenchError(
            f"Kernel {name!r} is not installed (available: {available}).",
            "Install it (e.g. python -m ipykernel install --user) or pass --kernel.",
        ) from exc
    return str(manager.kernel_name)


def notebook_language(nb: Any) -> str | None:
    """The notebook's language as papermill reads it (language_info, else kernelspec); papermill's
    translators are keyed by its exact spelling (`python`, `R`)."""
    metadata = nb.metadata
    language = (metadata.get("language_info") or {}).get("name") or (metadata.get("kernelspec") or {}).get("language")
    return str(language) if language else None


def resolve_kernel(nb: Any, kernel_name: str | None, label: str) -> tuple[str, str]:
    """(kernel, language) to execute `nb` with.

    A notebook without a kernelspec (what `nbformat.v4.new_notebook()` writes) runs on the default
    Python kernel, as nbclient and `jupyter nbconvert --execute` do, unless its language is
    another one: then on an installed kernel of that language, or it is refused.
    """
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager

    language = notebook_language(nb)
    name = kernel_name or (nb.metadata.get("kernelspec") or {}).get("name")
    if not name and language is not None and language.lower() != "python":
        name = _kernel_for_language(language, label)
    kernel = check_kernel(name or NATIVE_KERNEL_NAME)
    if language is None:
        language = str(KernelSpecManager().get_kernel_spec(kernel).language or "python")
    return kernel, language


def _kernel_for_language(language: str, label: str) -> str:
    """The first installed kernel (by name) for `language`; a one-line error when there is none."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().get_all_specs()
    wanted = language.lower()
    matching = sorted(name for name, info in specs.items() if str(info["spec"].get("language", "")).lower() == wanted)
    if not matching:
        available = ", ".join(sorted(specs)) or "none"
        raise WorkbenchError(
            f"{label} names no kernel and no {language} kernel is installed (available: {available}).",
            f"Install a {language} kernel, or pass --kernel NAME.",
        )
    return matching[0]


def execution_metadata(nb: Any, kernel: str, language: str) -> dict[str, Any] | None:
    """Kernelspec and language_info to fill in for execution when the notebook lacks them (else None)."""
    kernelspec = nb.metadata.get("kernelspec") or {}
    if kernelspec.get("name") and notebook_language(nb):
        return None
    from jupyter_client.kernelspec import KernelSpecManager

    display = KernelSpecManager().get_kernel_spec(kernel).display_name or kernel
    return {"kernelspec": {"name": kernelspec.get("name") or kernel, "display_name": kernelspec.get("display_name")
                           or display, "language": kernelspec.get("language") or language},
            "language_info": {**(nb.metadata.get("language_info") or {}), "name": language}}  # fmt: skip


@dataclass
class PreparedRun:
    """A validated run request, ready to execute."""

    notebook: Path
    source: bytes
    #: the parameters given (what is injected)
    params: dict[str, Any]
    #: the kernel as resolved (`python` becomes `python3`)
    kernel: str
    #: modules for a fork-server kernel (`workbench.kernels`); None runs a normal kernel
    preload: list[str] | None = None
    #: the parameters cell's literal defaults that were not given: recorded, never injected
    defaults: dict[str, Any] = field(default_factory=dict)
    language: str = "python"
    #: kernelspec/language_info the notebook lacks, filled in for execution (None: it has them)
    metadata: dict[str, Any] | None = None

    @property
    def effective_params(self) -> dict[str, Any]:
        """Every parameter value the run uses that is known before it runs: defaults, then the given ones."""
        return {**self.defaults, **self.params}


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
    kernel, language = resolve_kernel(nb, kernel_name, path.name)
    preload = None
    if fast and language.lower() == "python":
        from workbench.kernels.preload import preload_list

        preload = preload_list(nb, extra_preload)
    defaults = {name: value for name, value in literal_defaults(nb).items() if name not in clean}
    return PreparedRun(path, source, clean, kernel, preload, defaults, language,
                       execution_metadata(nb, kernel, language))  # fmt: skip


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
        kernel=prepared.kernel, params=prepared.effective_params, params_given=list(prepared.params), tags=tags,
        parent_run_id=parent_run_id, sweep_id=sweep_id, pipeline_run=pipeline_run,
        code_folder=prepared.notebook.parent,
    )  # fmt: skip
    folder = run_dir(ws, record.run_id)
    (folder / "source.ipynb").write_bytes(prepared.source)
    request = {"notebook": str(prepared.notebook), "params": prepared.params, "kernel": prepared.kernel,
               "pins": pins or {}, "preload": prepared.preload, "defaults": prepared.defaults,
               "language": prepared.language, "metadata": prepared.metadata}  # fmt: skip
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
                           request.get("preload"), request.get("defaults") or {}, request.get("language") or "python",
                           request.get("metadata"))  # fmt: skip
    record = RunRecord(ws, run_id, writer_for(ws, run_id), time.monotonic())
    return prepared, record, {k: int(v) for k, v in request.get("pins", {}).items()}


def _finish_writing(record: RunRecord, index: bool = True) -> None:
    """Flush the run's events and (with `index`) index it in the catalog now.

    Without `index` the run stays pending and whoever reads next indexes it: sweep workers leave
    that to the sweep's coordinator, so the catalog write is not between two of their runs.
    """
    if index:
        record.sync()
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
    """Execute a queued run to a final state; returns the status (`index`: see `_finish_writing`)."""
    import json

    folder = run_dir(ws, record.run_id)
    source_path = folder / "source.ipynb"
    if not source_path.is_file():
        source_path.write_bytes(prepared.source)
    env = {ENV_RUN_ID: record.run_id, ENV_HOME: str(ws.root), **thread_env(parallel)}
    if pins:
        env[ENV_PINS] = json.dumps(pins)
    global _cancel_requested
    _cancel_requested = False
    if _cancelled(folder):
        record.end("killed", _CANCELLED)
        _finish_writing(record, index)
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
        status, error = "killed", {**_CANCELLED, "ename": "KeyboardInterrupt", "evalue": "Interrupted."}
    except Exception as exc:  # a failing cell, a dead kernel, a kernel that would not start
        status, error = ("killed", _CANCELLED) if _cancelled(folder) else ("failed", _error_from(exc))
    finally:
        heartbeat.stop()
    stdout_path, stderr_path, output_path = folder / "stdout.txt", folder / "stderr.txt", folder / "executed.ipynb"
    output_blob = blobs.put_file(ws, output_path, ".ipynb") if output_path.is_file() else None
    for path in (stdout_path, stderr_path):
        if path.is_file() and path.stat().st_size:
            blob_id = blobs.put_file(ws, path, ".txt")
            record.writer.emit("artifact", name=path.stem, kind="text", blob=blob_id,
                               size=path.stat().st_size, meta=None, at=now_iso())  # fmt: skip
    record.end(status, error, output_blob)
    _finish_writing(record, index)
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
        if _cancelled(folder):
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

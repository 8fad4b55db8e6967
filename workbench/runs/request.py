"""A run request: validated before a kernel starts, queued into its run folder, reopened to execute.

Everything that can be refused is checked in `prepare`, before any record is written, so a mistake
leaves nothing behind. `queue` then creates the run (`queued`) and writes what any process needs to
execute it (the notebook content and `request.json`); `reopen` reads that back in the process that
executes it (a background worker, a sweep pool, a Dask worker).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import blobs
from workbench.errors import WorkbenchError
from workbench.kernels.readiness import kernel_start_timeout
from workbench.runs.events import run_dir
from workbench.runs.ingest import writer_for
from workbench.runs.kernel_choice import execution_metadata, resolve_kernel
from workbench.runs.lifecycle import RunRecord, create_run
from workbench.runs.params import literal_defaults, read_notebook, validate_params
from workbench.workspace import Workspace

REQUEST_FILE = "request.json"


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
    #: scikit-learn autologging on from the kernel's start (`workbench.autologging.kernel`)
    autolog: bool = True

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
    autolog: bool = True,
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
    kernel_start_timeout()  # an invalid $WORKBENCH_KERNEL_START_TIMEOUT is refused now, not as a failed run
    return PreparedRun(path, source, clean, kernel, preload, defaults, language,
                       execution_metadata(nb, kernel, language), autolog)  # fmt: skip


def queue(
    ws: Workspace, prepared: PreparedRun, *, experiment: str | None = None, tags: dict[str, str] | None = None,
    parent_run_id: str | None = None, sweep_id: str | None = None, pipeline_run: str | None = None,
    pins: dict[str, int] | None = None, run_id: str | None = None,
) -> RunRecord:  # fmt: skip
    """Create the run record (`queued`) so UIs see it before it starts (`run_id`: given, else a new one).

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
        code_folder=prepared.notebook.parent, run_id=run_id,
    )  # fmt: skip
    folder = run_dir(ws, record.run_id)
    (folder / "source.ipynb").write_bytes(prepared.source)
    request = {"notebook": str(prepared.notebook), "params": prepared.params, "kernel": prepared.kernel,
               "pins": pins or {}, "preload": prepared.preload, "defaults": prepared.defaults,
               "language": prepared.language, "metadata": prepared.metadata, "autolog": prepared.autolog}  # fmt: skip
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
                           request.get("metadata"), bool(request.get("autolog", True)))  # fmt: skip
    record = RunRecord(ws, run_id, writer_for(ws, run_id), time.monotonic())
    return prepared, record, {k: int(v) for k, v in request.get("pins", {}).items()}

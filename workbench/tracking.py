"""The logging API used inside notebooks: `wb.log_metric`, `wb.log_model`, ...

In a notebook executed by `wb.run` / `workbench run`, the runner has already created the run and
passed its id in `WORKBENCH_RUN_ID`; the calls here only append events to that run's file.
Opened interactively in JupyterLab, the first log call creates an `interactive` run that ends
(`finished`) when the kernel exits, or is marked `killed` by the next reader if the kernel dies.
Events are flushed in batches, after every notebook cell and at exit. Connected to a team server
(`wb.connect`, `WORKBENCH_URL`, `workbench login`), the interactive run is written to that server's
local spool and shipped by a background sender instead (`workbench.remote.runs` decides, once).
"""

from __future__ import annotations

import atexit
import math
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

from workbench.errors import ValidationError, WorkbenchError
from workbench.names import validate_name
from workbench.remote.runs import injected_workspace, interactive_run
from workbench.runs import artifacts
from workbench.runs.events import ENV_PINS, ENV_RUN_ID, Heartbeat, metric_line, metric_prefix, now_iso, run_dir
from workbench.runs.ids import check_run_id
from workbench.runs.ingest import writer_for
from workbench.runs.lifecycle import RunRecord
from workbench.workspace import Workspace

ENV_EXPERIMENT = "WORKBENCH_EXPERIMENT"
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]{0,127}$")

_lock = threading.Lock()
_active: _ActiveRun | None = None
_experiment: str | None = None
_pending_inputs: dict[tuple[str, int], None] = {}  # read before the interactive run existed
_metric_prefixes: dict[str, str] = {}  # valid metric name -> start of its event line
_METRIC_PREFIXES_MAX = 10_000


class _ActiveRun:
    def __init__(self, record: RunRecord, interactive: bool) -> None:
        self.record = record
        self.interactive = interactive
        self.heartbeat = Heartbeat(run_dir(record.ws, record.run_id)).start() if interactive else None
        self.ended = False

    @property
    def run_id(self) -> str:
        return self.record.run_id


def _flush_active(*_args: Any) -> None:
    if _active is not None:
        _active.record.writer.flush()


def _on_exit() -> None:
    if _active is None:
        return
    if _active.interactive and not _active.ended:
        end_run()
    else:
        _active.record.writer.flush()


def _install_hooks() -> None:
    atexit.register(_on_exit)
    # A kernel has imported IPython long before user code runs; a plain script has no shell to hook
    # into, and importing IPython only to learn that would cost it a noticeable part of a second.
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if shell is not None:
        shell.events.register("post_run_cell", _flush_active)


def active_run(create: bool = True) -> _ActiveRun | None:
    """The run this process logs to: the injected one, else a new interactive run (if `create`)."""
    global _active
    with _lock:
        if _active is not None and not _active.ended:
            return _active
        injected = os.environ.get(ENV_RUN_ID)
        if injected:
            check_run_id(injected)
            ws = injected_workspace(injected)  # the workspace, or a team server's spool
            _active = _ActiveRun(RunRecord(ws, injected, writer_for(ws, injected), 0.0), interactive=False)
        elif create:
            experiment = _experiment or os.environ.get(ENV_EXPERIMENT, "interactive")
            record = interactive_run(experiment)  # the local workspace, or a team server's spool
            record.set_status("running")
            for name, version in _pending_inputs:
                record.writer.emit("input", name=name, version=version)
            _pending_inputs.clear()
            record.sync()
            _active = _ActiveRun(record, interactive=True)
        else:
            return None
        _install_hooks()
        return _active


def set_experiment(name: str) -> None:
    """File the interactive runs of this kernel under `name` (a run started by the runner keeps
    the experiment it was given: the caller of `wb.run` / `workbench run` decides)."""
    global _experiment
    _experiment = validate_name(name, "experiment name")


def active_run_id() -> str | None:
    run = active_run(create=False)
    return run.run_id if run else None


def end_run(status: str = "finished") -> None:
    """End the interactive run (the next log call starts a new one)."""
    global _active
    if _active is None or _active.ended:
        return
    if not _active.interactive:
        raise WorkbenchError("This run is managed by the runner and ends with the notebook.")
    if _active.heartbeat:
        _active.heartbeat.stop()
    _active.record.end(status)
    _active.ended = True
    _active.record.sync()


def _key(key: object, kind: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValidationError(
            f"Invalid {kind} name {key!r}.",
            "Use letters, digits, '_', '-', '.', '/' (starting with a letter or '_').",
        )
    return key


def _number(key: str, value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"Metric {key!r} must be a number, got {type(value).__name__}.")
    return float(value) if math.isfinite(value) else float("nan")


def _metric_prefix(key: object) -> str:
    """The validated metric name's event line prefix (cached: a series logs the same names again and again)."""
    prefix = _metric_prefixes.get(key) if type(key) is str else None
    if prefix is None:
        key = _key(key, "metric")
        if len(_metric_prefixes) >= _METRIC_PREFIXES_MAX:
            _metric_prefixes.clear()
        prefix = _metric_prefixes[key] = metric_prefix(key)
    return prefix


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Record a metric value (call repeatedly with `step` for a series)."""
    prefix = _metric_prefix(key)
    # Plain finite floats skip the general conversion (numpy scalars, ints, NaN/inf, bad types).
    number = value if type(value) is float and value - value == 0.0 else _number(key, value)
    if step is not None and type(step) is not int and (isinstance(step, bool) or not isinstance(step, int)):
        raise ValidationError(f"step must be an integer, got {step!r}.")
    run = _active
    if run is None or run.ended:
        run = active_run()
    run.record.writer.emit_line(metric_line(prefix, number, step, now_iso()))


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    for key, value in metrics.items():
        log_metric(key, value, step)


def log_param(key: str, value: Any) -> None:
    active_run().record.writer.emit("param", key=_key(key, "parameter"), value=value)


def log_params(params: dict[str, Any]) -> None:
    for key, value in params.items():
        log_param(key, value)


def set_tag(key: str, value: Any) -> None:
    active_run().record.writer.emit("tag", key=_key(key, "tag"), value=str(value))


def _emit(event: str, /, **fields: Any) -> None:
    """Append to the active run, resolved only once the blob is stored (as every log call does)."""
    active_run().record.writer.emit(event, **fields)


def _run_workspace() -> Workspace:
    """Where the active run's blobs go: its workspace (a team server's spool for a remote run)."""
    return active_run().record.ws


def _emit_artifact(name: str, kind: str, blob_id: str, meta: dict[str, Any] | None = None) -> str:
    """Record an already stored blob as an artifact of the active run."""
    return artifacts.record(_run_workspace(), _emit, name, kind, blob_id, meta)


def log_artifact(path: str | os.PathLike[str], name: str | None = None) -> str:
    """Store a file with the run (content-addressed); returns its blob id."""
    return artifacts.write_file(_run_workspace(), _emit, Path(path), name)


def log_text(text: str, name: str) -> str:
    return artifacts.write_text(_run_workspace(), _emit, name, text)


def log_figure(fig: Any, name: str) -> str:
    """Store a plotly figure (JSON, renderable later in notebooks, reports and the extension)."""
    return artifacts.write_figure(_run_workspace(), _emit, name, fig)


def log_model(model: Any, name: str, sample: Any = None) -> str:
    """Store a scikit-learn model with skops, plus the input schema taken from `sample`."""
    from workbench.models.serialization import dump_model

    validate_name(name, "model name")  # before serializing: a bad name should not cost a dump
    data, meta = dump_model(model, sample)
    return artifacts.write_model(_run_workspace(), _emit, name, data, meta)


def record_input(name: str, version: int) -> None:
    """Lineage: the active run (if any) read snapshot `name@version`."""
    run = active_run(create=False)
    if run is not None:
        run.record.writer.emit("input", name=name, version=version)
    else:  # interactive: attach to the run the first log call creates
        _pending_inputs[(name, version)] = None


def pinned_version(name: str) -> int | None:
    """Snapshot version pinned for this run by `rerun` (same data as the original run)."""
    import json

    pins = os.environ.get(ENV_PINS)
    if not pins:
        return None
    try:
        value = json.loads(pins).get(name)
    except ValueError:
        return None
    return int(value) if value else None

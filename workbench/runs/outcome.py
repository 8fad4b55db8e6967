"""Recording how a run ended: its status, the error of a failure, its executed notebook and output.

Whatever happened (success, a failing cell, a dead kernel, a cancel), a run ends with a final
status, the executed notebook and its stdout/stderr as blobs and, for failures, the failing cell
and its traceback (ANSI colours stripped, so the UI and the CLI show plain text).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from workbench import blobs
from workbench.runs import artifacts
from workbench.runs.lifecycle import RunRecord
from workbench.workspace import Workspace

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: The error of a run cancelled before or while it executed.
CANCELLED: dict[str, Any] = {"cell_index": None, "ename": "Cancelled", "evalue": "The run was cancelled.",
                             "traceback": []}  # fmt: skip
#: The error of a run interrupted by Ctrl-C in the process executing it.
INTERRUPTED: dict[str, Any] = {**CANCELLED, "ename": "KeyboardInterrupt", "evalue": "Interrupted."}


def error_from(exc: BaseException) -> dict[str, Any]:
    """The recorded error of a failed execution: the failing cell and its traceback for a cell error,
    else the exception's one line (a dead kernel, a kernel that would not start)."""
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


def record_outcome(ws: Workspace, record: RunRecord, folder: Path, status: str, error: dict[str, Any] | None,
                   index: bool = True) -> None:  # fmt: skip
    """End the run: the executed notebook and non-empty stdout/stderr stored as blobs, then the end event."""
    stdout_path, stderr_path, output_path = folder / "stdout.txt", folder / "stderr.txt", folder / "executed.ipynb"
    output_blob = blobs.put_file(ws, output_path, ".ipynb") if output_path.is_file() else None
    for path in (stdout_path, stderr_path):
        if path.is_file() and path.stat().st_size:
            artifacts.record(ws, record.writer.emit, path.stem, "text", blobs.put_file(ws, path, ".txt"))
    record.end(status, error, output_blob)
    finish_writing(record, index)


def finish_writing(record: RunRecord, index: bool = True) -> None:
    """Flush the run's events and (with `index`) index it in the catalog now.

    Without `index` the run stays pending and whoever reads next indexes it: sweep workers leave
    that to the sweep's coordinator, so the catalog write is not between two of their runs.
    """
    if index:
        record.sync()
    else:
        record.writer.flush()

"""Prediction logging, off the request path.

Requests put (inputs, outputs, version, latency) on an in-memory queue; a daemon thread appends
them as JSON lines to `predictions/<model>/<date>-<pid>.jsonl` once a second (and at shutdown).
One file per server process means no locks and no catalog writes while serving; `workbench
monitor` reads the files with DuckDB.

A model server of a team server writes the same files into its spool and ships them
(`serving.sources.PredictionShipper`); the team server appends what it receives (`receive`) to
`predictions/<model>/remote-<stream>.jsonl` of its workspace, byte for byte, so `workbench monitor`
there reads them like local ones.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.errors import ValidationError, WorkbenchError
from workbench.names import validate_name
from workbench.permissions import make_dir, open_for_append
from workbench.workspace import Workspace


def predictions_dir(ws: Workspace, model: str) -> Path:
    return ws.root / "predictions" / validate_name(model, "model name")


class PredictionLogger:
    def __init__(self, ws: Workspace, model: str, interval: float = 1.0) -> None:
        self.folder = predictions_dir(ws, model)
        make_dir(self.folder)
        self.interval = interval
        self._queue: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="workbench-prediction-log", daemon=True)
        self.written = 0

    def start(self) -> PredictionLogger:
        self._thread.start()
        return self

    def log(self, request_id: str, version: int, inputs: list[dict[str, Any]], outputs: list[Any],
            latency_ms: float) -> None:  # fmt: skip
        """Queue one line per row; serialization happens here, writing in the background."""
        at = datetime.now(timezone.utc).isoformat()
        lines = [
            json.dumps(
                {
                    "at": at,
                    "request_id": request_id,
                    "version": version,
                    "latency_ms": round(latency_ms, 3),
                    "input": row,
                    "prediction": out,
                },
                default=_plain,
            )  # fmt: skip
            for row, out in zip(inputs, outputs, strict=True)
        ]
        self._queue.put(lines)

    def _path(self) -> Path:
        return self.folder / f"{datetime.now(timezone.utc):%Y%m%d}-{os.getpid()}.jsonl"

    def flush(self) -> None:
        lines: list[str] = []
        while True:
            try:
                lines += self._queue.get_nowait()
            except queue.Empty:
                break
        if lines:
            with os.fdopen(open_for_append(self._path()), "a") as fh:  # 0600: rows are request inputs
                fh.write("\n".join(lines) + "\n")
            self.written += len(lines)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self.flush()


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def wait_for_lines(folder: Path, count: int, timeout: float = 10.0) -> int:
    """Lines written so far (for tests and `monitor --wait`)."""
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        total = sum(p.read_bytes().count(b"\n") for p in folder.glob("*.jsonl"))
        if total >= count:
            break
        time.sleep(0.1)
    return total


# ------------------------------------------------------------------------------ receiving (team server)

#: Most records in one uploaded batch (the request body is limited to 1 MiB as well).
MAX_RECORDS = 10_000
RECORD_FIELDS = ("at", "request_id", "version", "latency_ms", "input", "prediction")
_STREAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class PredictionOffsetConflict(WorkbenchError):
    """The batch does not start where the server's copy of the stream ends: resend from `size`."""

    def __init__(self, stream: str, offset: int, size: int) -> None:
        super().__init__(f"Prediction log {stream}: the server has {size:,} bytes, the batch starts at {offset:,}.",
                         f"Resend from offset {size}.")  # fmt: skip
        self.size = size


def _check_record(number: int, line: bytes) -> None:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ValidationError(f"Prediction record {number} is not JSON: {exc}.") from exc
    if not isinstance(record, dict) or any(field not in record for field in RECORD_FIELDS):
        raise ValidationError(f"Prediction record {number} needs the fields {', '.join(RECORD_FIELDS)}.")
    if not isinstance(record["input"], dict) or not isinstance(record["at"], str):
        raise ValidationError(f"Prediction record {number}: 'input' must be an object and 'at' a time.")
    if not isinstance(record["version"], int) or isinstance(record["version"], bool):
        raise ValidationError(f"Prediction record {number}: 'version' must be a whole number.")


def remote_log_path(ws: Workspace, model: str, stream: str) -> Path:
    if not isinstance(stream, str) or not _STREAM.match(stream):
        raise ValidationError(f"Invalid prediction log stream {str(stream)[:40]!r}.")
    return predictions_dir(ws, model) / f"remote-{stream}.jsonl"


def received_size(ws: Workspace, model: str, stream: str) -> int:
    try:
        return remote_log_path(ws, model, stream).stat().st_size
    except FileNotFoundError:
        return 0


def receive(ws: Workspace, model: str, stream: str, offset: int, lines: str) -> int:
    """Append a batch of a client's prediction log (bytes `offset`.. of its file `stream`) exactly once;
    the size the server has of that stream after it. A batch already received (wholly or in part) is
    acknowledged, not appended again; one after a gap raises `PredictionOffsetConflict`."""
    path = remote_log_path(ws, model, stream)
    data = lines.encode("utf-8")
    if data and not data.endswith(b"\n"):
        raise ValidationError("Prediction records must be whole, newline-terminated lines.")
    records = data.split(b"\n")[:-1]
    if len(records) > MAX_RECORDS:
        raise ValidationError(f"{len(records):,} prediction records in one batch; at most {MAX_RECORDS:,}.")
    for number, line in enumerate(records, 1):
        _check_record(number, line)
    with _locks_guard:
        lock = _locks.setdefault(str(path), threading.Lock())
    with lock:
        size = received_size(ws, model, stream)
        if offset > size:
            raise PredictionOffsetConflict(stream, offset, size)
        if offset + len(data) <= size:
            return size  # had it all already: a resent batch
        new = data[size - offset :]
        if size > offset and data[size - offset - 1 : size - offset] != b"\n":
            raise PredictionOffsetConflict(stream, offset, size)  # not on a line boundary: not our bytes
        make_dir(path.parent)
        fd = open_for_append(path)
        try:
            os.write(fd, new)
            os.fsync(fd)
        finally:
            os.close(fd)
        return size + len(new)

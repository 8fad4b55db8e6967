"""Prediction logging, off the request path.

Requests put (inputs, outputs, version, latency) on an in-memory queue; a daemon thread appends
them as JSON lines to `predictions/<model>/<date>-<pid>.jsonl` once a second (and at shutdown):
{"at", "request_id", "row", "version", "latency_ms", "input", "prediction"}, plus "proba" ({class:
probability}, classifiers that have it) and "shadow": true on a shadow version's lines. Batch scoring
(`models.batch`, `workbench predict --log`) writes the same lines, `"batch": true` on each, to a file
of its own (`batch_lines`).

A classifier's probabilities are not needed for the answer, only for the log (live log loss), so
they are computed here too, off the response path: the writer predicts them for everything queued
since its last write in one call per model version. Measured (4 clients, single rows, a scaler +
logistic regression): computing them in the request cost a third of the server's throughput (one
more model call per request); batched once a second it costs about one call per second.
One file per server process means no locks and no catalog writes while serving; `workbench
monitor` reads the files with DuckDB.

A model server of a team server writes the same files into its spool and ships them
(`serving.sources.PredictionShipper`); the team server appends what it receives (`receive`) to
`predictions/<model>/remote-<stream>.jsonl` of its workspace, byte for byte, so `workbench monitor`
there reads them like local ones. Its failure log and the outcomes it received on /feedback travel
the same way (`kind` "failures" and "outcomes": into `failures_dir` and `quality.outcomes.outcomes_dir`).
"""

from __future__ import annotations

import json
import logging
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
from workbench.serving.inputs import Conformed
from workbench.serving.predict import Predictor, concatenate
from workbench.workspace import Workspace

log = logging.getLogger("workbench.serving")
#: Most rows whose probabilities the writer computes in one model call.
PROBA_BATCH_ROWS = 10_000


def predictions_dir(ws: Workspace, model: str) -> Path:
    return ws.root / "predictions" / validate_name(model, "model name")


#: Where a model server logs the requests it failed (5xx: the model or the server broke, not the
#: caller's input), one JSON line each: {"at", "version", "status", "kind"}. A folder of its own, so
#: every reader of the prediction lines (`*.jsonl` of the model's folder) stays as it was; its
#: presence says failures are logged, so a window without lines there had none (`quality.live`).
FAILURES_DIRNAME = "failures"


def failures_dir(ws: Workspace, model: str) -> Path:
    return predictions_dir(ws, model) / FAILURES_DIRNAME


class _Request:
    """One answered request, queued as it is: its lines are made by the writer (with probabilities)."""

    __slots__ = ("at", "request_id", "version", "inputs", "outputs", "latency_ms", "predictor", "shadow")

    def __init__(self, request_id: str, version: int, inputs: Conformed, outputs: list[Any], latency_ms: float,
                 predictor: Predictor | None, shadow: bool) -> None:  # fmt: skip
        self.at = datetime.now(timezone.utc).isoformat()
        self.request_id, self.version, self.inputs, self.outputs = request_id, version, inputs, outputs
        self.latency_ms, self.predictor, self.shadow = latency_ms, predictor, shadow


class PredictionLogger:
    def __init__(self, ws: Workspace, model: str, interval: float = 1.0) -> None:
        self.folder = predictions_dir(ws, model)
        make_dir(self.folder)
        make_dir(self.folder / FAILURES_DIRNAME)
        self._failures: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.interval = interval
        self._queue: queue.SimpleQueue[list[str] | _Request] = queue.SimpleQueue()
        self._flushing = threading.Lock()  # the writer thread and stop() never append at once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="workbench-prediction-log", daemon=True)
        self.written = 0

    def start(self) -> PredictionLogger:
        self._thread.start()
        return self

    def log(self, request_id: str, version: int, inputs: list[dict[str, Any]], outputs: list[Any], latency_ms: float,
            *, probas: list[dict[str, float]] | None = None, shadow: bool = False) -> None:  # fmt: skip
        """Queue one line per row; serialization happens here, writing in the background.

        Each line says which row of its request it is (`row`, 0-based: outcomes name a row of a
        request), the classifier's `proba` when given, and `"shadow": true` for a shadow version's
        prediction, which nobody received (left out of the served traffic by whoever reads the log)."""
        at = datetime.now(timezone.utc).isoformat()
        self._queue.put(_lines(at, request_id, version, inputs, outputs, latency_ms, probas, shadow))

    def log_request(self, request_id: str, version: int, inputs: Conformed, outputs: list[Any], latency_ms: float,
                    predictor: Predictor | None = None, shadow: bool = False) -> None:  # fmt: skip
        """Queue an answered request as it is (no work on the response path): the writer makes its
        lines, with the probabilities of `predictor` (None: without) computed in one batch."""
        self._queue.put(_Request(request_id, version, inputs, outputs, latency_ms, predictor, shadow))

    def log_failure(self, version: int, status: int, kind: str) -> None:
        """Queue a request the server failed (`status` 5xx, `kind` as in /metrics' errors), for the
        live error rate per version and window."""
        at = datetime.now(timezone.utc).isoformat()
        self._failures.put(json.dumps({"at": at, "version": version, "status": status, "kind": kind}))

    def _path(self, folder: Path | None = None) -> Path:
        return (folder or self.folder) / f"{datetime.now(timezone.utc):%Y%m%d}-{os.getpid()}.jsonl"

    def _flush_failures(self) -> None:
        lines: list[str] = []
        while True:
            try:
                lines.append(self._failures.get_nowait())
            except queue.Empty:
                break
        if lines:
            with os.fdopen(open_for_append(self._path(self.folder / FAILURES_DIRNAME)), "a") as fh:
                fh.write("\n".join(lines) + "\n")

    def flush(self) -> None:
        with self._flushing:
            self._flush_failures()
            items: list[list[str] | _Request] = []
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            probas = _probabilities([item for item in items if isinstance(item, _Request) and item.predictor])
            lines: list[str] = []
            for item in items:
                try:
                    lines += item if isinstance(item, list) else _request_lines(item, probas.get(id(item)))
                except Exception:  # a value JSON cannot hold: that request's lines are lost, not the others'
                    log.exception("could not log the predictions of request %s", getattr(item, "request_id", "?"))
            if lines:
                with os.fdopen(open_for_append(self._path()), "a") as fh:  # 0600: rows are request inputs
                    fh.write("\n".join(lines) + "\n")
                self.written += len(lines)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # a full disk: keep the writer alive, the next lines may fit
                log.exception("could not write the prediction log to %s", self.folder)

    def stop(self) -> None:
        self._stop.set()
        self.flush()


def _lines(at: str, request_id: str, version: int, inputs: list[dict[str, Any]], outputs: list[Any],
           latency_ms: float, probas: list[dict[str, float]] | None, shadow: bool,
           first_row: int = 0, batch: bool = False) -> list[str]:  # fmt: skip
    latency = round(latency_ms, 3)
    extra: dict[str, Any] = {"shadow": True} if shadow else {}
    if batch:
        extra["batch"] = True
    lines = []
    for index, (row, out) in enumerate(zip(inputs, outputs, strict=True)):
        record = {"at": at, "request_id": request_id, "row": first_row + index, "version": version,
                  "latency_ms": latency, "input": row, "prediction": out, **extra}  # fmt: skip
        if probas is not None:
            record["proba"] = probas[index]
        lines.append(json.dumps(record, default=_plain))
    return lines


def batch_lines(request_id: str, version: int, inputs: Conformed, outputs: list[Any], latency_ms: float,
                probas: list[dict[str, float]] | None, first_row: int) -> list[str]:  # fmt: skip
    """The lines of rows `first_row`.. of a batch scoring job: a served request's lines, whose `row`
    counts through the whole scored table (outcomes name a row of it) and which say `"batch": true`
    (every reader selects the fields it knows, so the extra one is ignored where it does not matter)."""
    at = datetime.now(timezone.utc).isoformat()
    return _lines(at, request_id, version, inputs.records(), outputs, latency_ms, probas, False, first_row, True)


def _request_lines(item: _Request, probas: list[dict[str, float]] | None) -> list[str]:
    return _lines(item.at, item.request_id, item.version, item.inputs.records(), item.outputs, item.latency_ms,
                  probas, item.shadow)  # fmt: skip


def _probabilities(requests: list[_Request]) -> dict[int, list[dict[str, float]] | None]:
    """The probabilities of each request (by `id`), computed per model and column list in calls of at
    most PROBA_BATCH_ROWS rows (one call for a second of single-row traffic)."""
    groups: dict[tuple[int, tuple[str, ...]], list[_Request]] = {}
    for item in requests:
        groups.setdefault((id(item.predictor), tuple(item.inputs.names)), []).append(item)
    found: dict[int, list[dict[str, float]] | None] = {}
    for group in groups.values():
        start = 0
        while start < len(group):
            chunk, rows = [], 0
            while start < len(group) and (not chunk or rows + len(group[start].outputs) <= PROBA_BATCH_ROWS):
                chunk.append(group[start])
                rows += len(group[start].outputs)
                start += 1
            predictor = chunk[0].predictor
            table = predictor.probabilities(concatenate([item.inputs for item in chunk])) if predictor else None
            offset = 0
            for item in chunk:
                found[id(item)] = table[offset : offset + len(item.outputs)] if table is not None else None
                offset += len(item.outputs)
    return found


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


#: What a model server ships (`receive`'s `kind`): its prediction log, its failure log, the outcomes it received.
LOG_KINDS = ("predictions", "failures", "outcomes")
FAILURE_FIELDS = ("at", "version", "status")
OUTCOME_FIELDS = ("at", "request_id", "outcome", "source")
_WHOLE = ("version", "status")


def _check_record(number: int, line: bytes, kind: str = "predictions") -> None:
    """A shipped line is what the model server writes for its `kind` (else ValidationError): a
    prediction (`RECORD_FIELDS`), a failure ({"at", "version", "status", "kind"}) or an outcome
    (checked like one received on /feedback: `quality.outcomes.check_items`)."""
    label = f"{kind[:-1].capitalize()} record {number}"
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ValidationError(f"{label} is not JSON: {exc}.") from exc
    fields = {"predictions": RECORD_FIELDS, "failures": FAILURE_FIELDS, "outcomes": OUTCOME_FIELDS}[kind]
    if not isinstance(record, dict) or any(field not in record for field in fields):
        raise ValidationError(f"{label} needs the fields {', '.join(fields)}.")
    if not isinstance(record["at"], str) or not isinstance(record.get("input", {}), dict):
        raise ValidationError(f"{label}: 'input' must be an object and 'at' a time.")
    if kind == "outcomes":
        from workbench.quality.outcomes import FIELDS, SOURCES, check_items

        if record["source"] not in SOURCES:
            raise ValidationError(f"{label}: 'source' must be one of {', '.join(SOURCES)}.")
        check_items([{key: record[key] for key in FIELDS if key in record}], number, "record")
    elif any(not isinstance(record[f], int) or isinstance(record[f], bool) for f in fields if f in _WHOLE):
        raise ValidationError(f"{label}: 'version' must be a whole number.")


def remote_log_path(ws: Workspace, model: str, stream: str, kind: str = "predictions") -> Path:
    """Where the team server keeps what a client shipped of its log `stream` of `kind` (`LOG_KINDS`)."""
    if not isinstance(stream, str) or not _STREAM.match(stream):
        raise ValidationError(f"Invalid prediction log stream {str(stream)[:40]!r}.")
    if kind not in LOG_KINDS:
        raise ValidationError(f"Unknown log kind {str(kind)[:40]!r}.", f"Use one of {', '.join(LOG_KINDS)}.")
    if kind == "outcomes":
        from workbench.quality.outcomes import outcomes_dir

        return outcomes_dir(ws, model) / f"remote-{stream}.jsonl"
    folder = predictions_dir(ws, model) if kind == "predictions" else failures_dir(ws, model)
    return folder / f"remote-{stream}.jsonl"


def received_size(ws: Workspace, model: str, stream: str, kind: str = "predictions") -> int:
    try:
        return remote_log_path(ws, model, stream, kind).stat().st_size
    except FileNotFoundError:
        return 0


def receive(ws: Workspace, model: str, stream: str, offset: int, lines: str, kind: str = "predictions") -> int:
    """Append a batch of a client's log of `kind` (bytes `offset`.. of its file `stream`) exactly once;
    the size the server has of that stream after it. A batch already received (wholly or in part) is
    acknowledged, not appended again; one after a gap raises `PredictionOffsetConflict`. Receiving
    makes the log's folder, even for an empty batch: an empty failures folder says "no failures"
    (`quality.live`), which a model server that logs them announces so."""
    path = remote_log_path(ws, model, stream, kind)
    data = lines.encode("utf-8")
    if data and not data.endswith(b"\n"):
        raise ValidationError("Prediction records must be whole, newline-terminated lines.")
    records = data.split(b"\n")[:-1]
    if len(records) > MAX_RECORDS:
        raise ValidationError(f"{len(records):,} prediction records in one batch; at most {MAX_RECORDS:,}.")
    for number, line in enumerate(records, 1):
        _check_record(number, line, kind)
    make_dir(path.parent)
    with _locks_guard:
        lock = _locks.setdefault(str(path), threading.Lock())
    with lock:
        size = received_size(ws, model, stream, kind)
        if offset > size:
            raise PredictionOffsetConflict(stream, offset, size)
        if offset + len(data) <= size:
            return size  # had it all already: a resent batch
        new = data[size - offset :]
        if size > offset and data[size - offset - 1 : size - offset] != b"\n":
            raise PredictionOffsetConflict(stream, offset, size)  # not on a line boundary: not our bytes
        fd = open_for_append(path)
        try:
            os.write(fd, new)
            os.fsync(fd)
        finally:
            os.close(fd)
        return size + len(new)

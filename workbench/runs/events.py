"""Append-only event files: the hot write path of a run, with no database in the way.

Everything a run records (status changes, params, metrics, tags, artifacts, inputs) is one JSON
line in `runs/<run_id>/events.jsonl`. Logging a metric is a buffered file append: no lock, no
catalog round trip. The buffer is flushed when it grows, after a short interval, after every
notebook cell and at exit, and each flush is a single `write()` of whole lines, so a kill -9
loses at most the last unflushed batch and never leaves a torn record that later reads would
trip on (a partial last line is ignored). The catalog is an index of these files.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.permissions import make_dir, open_for_append
from workbench.workspace import Workspace

EVENTS_FILE = "events.jsonl"
ENV_RUN_ID = "WORKBENCH_RUN_ID"  # set by the runner in the kernel: the run to log into
ENV_RUN_HOME = "WORKBENCH_RUN_HOME"  # set by the runner: the folder holding that run (a workspace or a spool)
ENV_PINS = "WORKBENCH_SNAPSHOT_PINS"  # set by rerun: {"snapshot name": version} to read
HEARTBEAT_FILE = "heartbeat"
FLUSH_EVERY_EVENTS = 1000
FLUSH_EVERY_SECONDS = 0.5


def run_dir(ws: Workspace, run_id: str) -> Path:
    from workbench.runs.ids import check_run_id

    return ws.runs_dir / check_run_id(run_id)


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, shared by now_iso calls within it


def now_iso() -> str:
    """The current UTC time as `datetime.now(timezone.utc).isoformat()` writes it (microseconds,
    "+00:00"), without building a datetime per event: only the seconds part is formatted, once a second."""
    global _second
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, datetime.fromtimestamp(seconds, timezone.utc).isoformat()[:-6])
    return f"{cached[1]}.{micros:06d}+00:00" if micros else f"{cached[1]}+00:00"


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def metric_prefix(key: str) -> str:
    """The start of a metric event line, up to its value: computed once per metric name (see `metric_line`)."""
    return '{"t": "metric", "key": ' + json.dumps(key) + ', "value": '


def metric_line(prefix: str, value: float, step: int | None, at: str) -> str:
    """A metric event line, byte for byte what `EventWriter.emit("metric", key=..., value=value, step=step,
    at=at)` writes, without a dict and a JSON encoder per point: `value` is a float, `step` an int or
    None, `at` a `now_iso` string (nothing to escape)."""
    number = float.__repr__(value)
    if number[-1] in "nf":  # nan, inf, -inf: spelled as json.dumps(allow_nan=True) does
        number = _NON_FINITE[number]
    return f'{prefix}{number}, "step": {"null" if step is None else int.__repr__(step)}, "at": "{at}"}}'


class EventWriter:
    """Buffered, thread-safe appender for one run's event file.

    A daemon thread (started on the first event, stopped by `close`) flushes what is buffered
    every FLUSH_EVERY_SECONDS, so metrics logged inside a long-running cell reach the file even
    if the process is killed before the cell ends. `on_flush` runs after each write that wrote
    something (used to mark the run as having news for the catalog).
    """

    def __init__(self, path: Path, on_flush: Callable[[], None] | None = None) -> None:
        self.path = path
        make_dir(path.parent)
        self._on_flush = on_flush
        self._buffer: list[str] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None

    def _start_flusher(self) -> None:
        writer = weakref.ref(self)
        closed = self._closed

        def loop() -> None:
            while not closed.wait(FLUSH_EVERY_SECONDS):
                alive = writer()
                if alive is None:
                    return
                try:
                    alive.flush()
                except OSError:
                    pass
                del alive

        self._flusher = threading.Thread(target=loop, name="workbench-flush", daemon=True)
        self._flusher.start()

    def emit(self, event: str, /, **fields: Any) -> None:
        self.emit_line(json.dumps({"t": event, **fields}, default=_json_default, allow_nan=True))

    def emit_line(self, line: str) -> None:
        """Buffer one already encoded event (a JSON object on one line, without the newline)."""
        with self._lock:
            if self._flusher is None and not self._closed.is_set():
                self._start_flusher()
            self._buffer.append(line)
            due = len(self._buffer) >= FLUSH_EVERY_EVENTS or time.monotonic() - self._last_flush >= FLUSH_EVERY_SECONDS
        if due:
            self.flush()

    def flush(self) -> bool:
        """Write the buffered events in one append; True if anything was written."""
        with self._lock:
            if not self._buffer:
                return False
            data = ("\n".join(self._buffer) + "\n").encode()
            self._buffer.clear()
            self._last_flush = time.monotonic()
            fd = open_for_append(self.path)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        if self._on_flush is not None:
            self._on_flush()
        return True

    def close(self) -> None:
        """Flush and stop the background flusher (later events are still written on flush)."""
        self._closed.set()
        self.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (datetime, Path)):
        return str(value)
    return repr(value)


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete event in a file (a torn line from a crash is skipped)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    yield from parse_events(data)


_scan = json.JSONDecoder().scan_once  # the C scanner json.loads runs, with its defaults (NaN allowed)


def parse_events(data: bytes) -> list[Any]:
    """The events of an event file's content: one per line that is valid JSON on its own (a torn
    line from a crash, possibly continued by a later append, is skipped), as `json.loads` of each
    line gives them.

    The file is decoded once and each line handed straight to the scanner `json.loads` ends up in,
    which saves most of the cost of one `json.loads` call per line. Lines that call's encoding
    detection would read differently (a byte-order mark, NUL bytes), and every line of a file that
    is not valid UTF-8, still go through `json.loads`.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [event for line in data.split(b"\n") if line.strip() for event in _loads(line)]
    events = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        if line[0] == "\ufeff" or "\x00" in line[:4]:
            events += _loads(line.encode())
            continue
        try:
            event, end = _scan(line, len(line) - len(line.lstrip(" \t\r")))
        except (StopIteration, ValueError):
            continue
        if end == len(line) or not line[end:].strip(" \t\r"):  # nothing but JSON whitespace after it
            events.append(event)
    return events


def _loads(line: bytes) -> list[Any]:
    try:
        return [json.loads(line)]
    except ValueError:
        return []


def touch_heartbeat(folder: Path) -> None:
    path = folder / HEARTBEAT_FILE
    if path.exists():
        os.utime(path)
    else:
        os.close(open_for_append(path))


def heartbeat_age(folder: Path) -> float | None:
    try:
        return time.time() - (folder / HEARTBEAT_FILE).stat().st_mtime
    except FileNotFoundError:
        return None


class Heartbeat:
    """Touches the run's heartbeat file every few seconds from a daemon thread."""

    def __init__(self, folder: Path, interval: float = 2.0) -> None:
        self.folder = folder
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="workbench-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        touch_heartbeat(self.folder)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                touch_heartbeat(self.folder)
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()

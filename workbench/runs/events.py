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
ENV_PINS = "WORKBENCH_SNAPSHOT_PINS"  # set by rerun: {"snapshot name": version} to read
HEARTBEAT_FILE = "heartbeat"
FLUSH_EVERY_EVENTS = 1000
FLUSH_EVERY_SECONDS = 0.5


def run_dir(ws: Workspace, run_id: str) -> Path:
    from workbench.runs.ids import check_run_id

    return ws.runs_dir / check_run_id(run_id)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


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
        line = json.dumps({"t": event, **fields}, default=_json_default, allow_nan=True)
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
    """Every complete event in a file (a torn last line from a crash is skipped)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError:
            continue


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

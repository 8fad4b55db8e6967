"""Prediction logging, off the request path.

Requests put (inputs, outputs, version, latency) on an in-memory queue; a daemon thread appends
them as JSON lines to `predictions/<model>/<date>-<pid>.jsonl` once a second (and at shutdown).
One file per server process means no locks and no catalog writes while serving; `workbench
monitor` reads the files with DuckDB.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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

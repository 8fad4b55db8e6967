"""Shipping run event files from the local spool to the team server, from a background thread.

A run logged against a server writes its event file into the spool folder of that server
(`$XDG_CACHE_HOME/workbench/spool/<host>_<port>/runs/<run_id>/events.jsonl`): logging is the same
buffered file append as in a local workspace, never a network call. The local file IS the spool.
A `Sender` (one per server per process) ships every spooled run the server does not fully have:

- in chunks of whole lines starting at the acknowledged offset, kept in `sent.json` next to the
  event file (written atomically after each answer, so a restarted process resumes where the
  server is, and a chunk sent twice is acknowledged, not appended twice: see `runs.receive`);
- one process at a time per run: the processes of one machine share the spool (a sweep's runs, two
  kernels) and each ships every run in it, so a run's chunk is read, sent and acknowledged in
  `sent.json` under a lock on its `send.lock` file (else one process's late answer could move
  `sent.json` back, or be taken for another client logging to the run, and stop its shipping);
- the blobs a chunk refers to (artifacts, models) first, by content hash, only those the server
  lacks (`HEAD`, then `PUT`);
- when the server cannot be reached or is busy: again later, with backoff up to a few seconds,
  for as long as the process lives (nothing is lost: the events stay in the spool, and the next
  process logging to that server, or `workbench sync`, sends what is left);
- a refusal (401, 403, a malformed chunk) stops that run's shipping; it is printed once and kept in
  `sent.json` for `sync_state`;
- an answer saying the run was asked to stop (`"cancel": true`, after `POST /runs/{id}/cancel`
  from any machine) cancels it here, once, as a local `cancel_run` would (`cancellation`): the
  cancel file in its spool folder stops it if still queued, the process executing it is told if
  running. Live runs send a keep-alive every `KEEPALIVE_SECONDS`, so a cancel reaches them within that.

`flush(timeout)` waits until the server has everything (the end of an interactive run calls it).
While the server lacks part of a run, `sync_state(run_id)` says "syncing".

Cleaning the spool of what the server has: `remote.spool_cleaning`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.remote.client import (
    Client,
    ConflictError,
    RemoteError,
    ServerBusyError,
    ServerUnreachableError,
)
from workbench.remote.config import Remote
from workbench.runs.events import EVENTS_FILE
from workbench.runs.ids import RUN_ID
from workbench.workspace import Workspace, _write_json_atomic

STATE_FILE = "sent.json"
LOCK_FILE = "send.lock"
BATCH_BYTES = 512 * 1024  # of event lines per request (the server takes bodies up to 1 MiB of JSON)
KEEPALIVE_SECONDS = 10.0  # an empty chunk for a live run that logged nothing meanwhile
IDLE_SECONDS = 0.5  # how often the thread looks for news when nobody nudges it
MAX_BACKOFF_SECONDS = 5.0
ENV_SPOOL = "WORKBENCH_SPOOL"
CLEAN_EVERY_SECONDS = 3600.0  # how often a long-lived sender cleans (more often when runs are kept for less)
MIN_CLEAN_EVERY_SECONDS = 5.0
_BLOB_FIELDS = {"artifact": ("blob",), "start": ("notebook_blob",), "end": ("output_blob",)}


def spool_root(remote: Remote) -> Path:
    """This server's spool: `$WORKBENCH_SPOOL/<host>_<port>`, else under `$XDG_CACHE_HOME/workbench/spool`
    (`~/.cache/...`)."""
    base = os.environ.get(ENV_SPOOL) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "workbench", "spool"
    )
    return Path(base) / remote.host


def spool_workspace(remote: Remote) -> Workspace:
    """The spool as a workspace: its `runs/` and `blobs/` hold what runs log until the server has it
    (no catalog). Private to its owner (0700)."""
    root = spool_root(remote)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    return Workspace(root)


def _state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {"offset": 0}
    return state if isinstance(state, dict) else {"offset": 0}


def complete_size(path: Path, window: int = BATCH_BYTES) -> int:
    """Bytes of a spooled file up to its last newline within its last `window` bytes (a line still
    being written is not sent); 0 for a missing or empty file. Event files and prediction logs."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if not size:
        return 0
    with open(path, "rb") as handle:
        handle.seek(max(0, size - window))
        tail = handle.read()
    return size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0


def run_sync_state(folder: Path, server: str) -> dict[str, Any]:
    """Where a spooled run stands: "synced" (the server has all of it), "syncing", or "failed" (refused).
    A folder no longer there was removed by `clean_spool`, which removes only runs the server has."""
    state = _state(folder)
    size = complete_size(folder / EVENTS_FILE)
    sent = int(state.get("offset", 0))
    status = "failed" if state.get("error") else "synced" if sent >= size and size else "syncing"
    if not folder.is_dir():
        status = "synced"
    return {"run_id": folder.name, "server": server, "state": status, "sent_bytes": sent, "bytes": size,
            "error": state.get("error"), "spool": str(folder)}  # fmt: skip


class Sender:
    """The background thread shipping one server's spool (see the module doc)."""

    def __init__(self, remote: Remote, spool: Workspace) -> None:
        self.remote = remote
        self.spool = spool
        self.client = Client(remote, timeout=30.0, retries=0)
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._requested = 0  # flush requests made
        self._done = 0  # the last request a complete pass has answered
        self._live: dict[str, float] = {}  # runs this process logs to -> when last sent to
        self._known_blobs: set[str] = set()
        self._reported: set[str] = set()
        self._cancelled: set[str] = set()  # runs this process cancelled because the server said so
        self._next_clean = 0.0  # monotonic time of the next automatic cleaning
        self._thread = threading.Thread(target=self._loop, name="workbench-sender", daemon=True)
        self._thread.start()

    # -- called by logging code

    def track(self, run_id: str) -> None:
        """A run this process logs to (kept alive on the server with empty chunks while it runs)."""
        self._live[run_id] = time.monotonic()
        self.nudge()

    def untrack(self, run_id: str) -> None:
        self._live.pop(run_id, None)

    def nudge(self) -> None:
        self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` s until the server has every spooled run (or refused it); True if so."""
        with self._cond:
            self._requested += 1
            target = self._requested
        self.nudge()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- the thread

    def _loop(self) -> None:
        failures = 0
        while True:
            delay = min(MAX_BACKOFF_SECONDS, 0.1 * 2**failures) if failures else IDLE_SECONDS
            self._wake.wait(delay)
            self._wake.clear()
            with self._cond:
                target = self._requested
            self._clean_if_due()
            try:
                complete = self.ship_all()
            except (ServerUnreachableError, ServerBusyError):
                failures = min(failures + 1, 10)
                continue
            except Exception as exc:  # a bug must not kill the thread: report it, try again later
                print(f"workbench: sending runs to {self.remote.url} failed: {exc!r}", file=sys.stderr)
                failures = min(failures + 1, 10)
                continue
            failures = 0
            if complete:
                with self._cond:
                    self._done = max(self._done, target)
                    self._cond.notify_all()
            else:
                self._wake.set()  # more to send: go on at once

    def ship_all(self) -> bool:
        """One pass over the spool: send a chunk of each run the server lacks. True if nothing is left."""
        runs = self.spool.runs_dir
        if not runs.is_dir():
            return True
        complete = True
        for entry in sorted(os.scandir(runs), key=lambda e: e.name):
            if entry.is_dir() and RUN_ID.match(entry.name):
                complete = self._ship(Path(entry.path)) and complete
        return complete

    def _clean_if_due(self) -> None:
        """Remove synced runs older than `keep_seconds()` at start, then hourly (never stops shipping)."""
        now = time.monotonic()
        if now < self._next_clean:
            return
        from workbench.remote.spool_cleaning import clean_spool, keep_seconds

        keep = keep_seconds()
        self._next_clean = now + max(MIN_CLEAN_EVERY_SECONDS, min(CLEAN_EVERY_SECONDS, keep))
        if math.isinf(keep):
            return
        try:
            clean_spool(self.spool, older_than=keep)
        except Exception as exc:  # a full disk or a permission problem must not stop shipping
            print(f"workbench: cleaning the spool {self.spool.root} failed: {exc!r}", file=sys.stderr)

    def _ship(self, folder: Path) -> bool:
        """Send the next chunk of one run; True if the server has all of it (or refused it for good)."""
        try:
            with _send_lock(folder):
                return self._ship_locked(folder)
        except FileNotFoundError:
            if folder.is_dir():
                raise
            return True  # removed by a cleaning meanwhile, which removes only runs the server has

    def _ship_locked(self, folder: Path) -> bool:
        run_id = folder.name
        if not folder.is_dir():  # moved away by a cleaning while this waited for the lock
            return True
        state = _state(folder)
        if state.get("error") or state.get("done"):
            return True
        offset = int(state.get("offset", 0))
        path = folder / EVENTS_FILE
        size = complete_size(path)
        live = run_id in self._live
        if offset >= size and not (live and time.monotonic() - self._live[run_id] > KEEPALIVE_SECONDS):
            return True
        data = _read_chunk(path, offset, size)
        try:
            text = data.decode("utf-8")
            self._upload_blobs(text, run_id)
            answer = self.client.request("POST", f"/runs/{run_id}/events", idempotent=True,
                                         json={"offset": offset, "lines": text}).json()  # fmt: skip
            acknowledged = int(answer["size"])
            if answer.get("cancel"):
                self._cancel(folder)
        except ConflictError as exc:
            acknowledged = int(exc.body.get("size", -1))
            if not 0 <= acknowledged <= size:
                return self._refused(folder, state, f"the server has {acknowledged} bytes of the run, this "
                                     f"client {size}: another client logs to it")  # fmt: skip
        except (ServerUnreachableError, ServerBusyError):
            raise
        except (RemoteError, UnicodeDecodeError) as exc:
            return self._refused(folder, state, str(exc))
        if live:
            self._live[run_id] = time.monotonic()
        ended = not live and _ends(path, size)  # within what was sent: the file may have grown since
        if acknowledged > offset + len(data) and not ended:
            return self._refused(folder, state, f"the server has {acknowledged} bytes of the run, more than this "
                                 f"client sent ({offset + len(data)}): another client logs to it")  # fmt: skip
        final = acknowledged >= size and ended
        _write_json_atomic(folder / STATE_FILE, {"offset": acknowledged, **({"done": True} if final else {})})
        return acknowledged >= size

    def _cancel(self, folder: Path) -> None:
        """Cancel a run the server was asked to stop, once (see the module doc); one that has ended stays as it is."""
        from workbench.runs.cancellation import CANCEL_FILE, cancel_in_folder

        if folder.name in self._cancelled or (folder / CANCEL_FILE).exists():  # done here, or by another process
            return
        self._cancelled.add(folder.name)
        try:
            cancel_in_folder(folder)
        except (WorkbenchError, OSError) as exc:  # gone meanwhile (a cleaning): nothing left to stop
            print(f"workbench: cancelling run {folder.name} failed: {exc}", file=sys.stderr)

    def _refused(self, folder: Path, state: dict[str, Any], message: str) -> bool:
        _write_json_atomic(folder / STATE_FILE, {**state, "error": message})
        if folder.name not in self._reported:
            self._reported.add(folder.name)
            print(f"workbench: run {folder.name} cannot be sent to {self.remote.url}: {message}", file=sys.stderr)
        return True

    def _upload_blobs(self, text: str, run_id: str) -> None:
        """PUT each blob the chunk refers to that the server lacks (before the chunk that names it)."""
        from workbench import blobs

        for blob_id in blobs_named(text.splitlines()):
            if blob_id in self._known_blobs:
                continue
            found = self.client.request("HEAD", f"/blobs/{blob_id}", ok=(404,))
            if found.status_code == 404:
                data = blobs.read_verified(self.spool, blob_id, what=f"blob of run {run_id}")
                self.client.request("PUT", f"/blobs/{blob_id}", content=data,
                                    headers={"Content-Type": "application/octet-stream"})  # fmt: skip
            self._known_blobs.add(blob_id)


def blobs_named(lines: Iterable[str]) -> Iterator[str]:
    """The blob ids event lines refer to (artifacts, a notebook run's notebook and output)."""
    for line in lines:
        if 'blob"' not in line:  # "blob", "notebook_blob", "output_blob": skip the rest unparsed
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for name in _BLOB_FIELDS.get(event.get("t"), ()) if isinstance(event, dict) else ():
            if isinstance(event.get(name), str) and event[name]:
                yield event[name]


@contextmanager
def _send_lock(folder: Path) -> Iterator[None]:
    """Exclusive, across the processes sharing the spool, while one of them ships a chunk of this run."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock (one process per spool there)
        yield
        return
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_chunk(path: Path, offset: int, size: int) -> bytes:
    """Whole lines from `offset`: up to BATCH_BYTES, or one longer line."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(min(BATCH_BYTES, size - offset))
        if b"\n" not in data and offset + len(data) < size:
            data += handle.read(size - offset - len(data))
    return data[: data.rfind(b"\n") + 1]


def _ends(path: Path, size: int) -> bool:
    """Whether the run's file has its end event (its last line, for a run that ended normally) in its
    first `size` bytes."""
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 4096))
        return b'"t": "end"' in handle.read(size - handle.tell())


# ------------------------------------------------------------------------------ cleaning



_senders: dict[str, Sender] = {}
_senders_lock = threading.Lock()


def sender_for(remote: Remote) -> Sender:
    """This process's sender for `remote` (started on first use; it also ships runs earlier processes
    left in the spool)."""
    with _senders_lock:
        sender = _senders.get(remote.url)
        if sender is None or sender.remote != remote:
            sender = _senders[remote.url] = Sender(remote, spool_workspace(remote))
        return sender


def sync_state(run_id: str | None = None) -> Any:
    """Where runs logged to the configured server stand: one run's `{"state": "synced" | "syncing" |
    "failed", ...}`, or with no `run_id` a list for every run in the spool."""
    from workbench.errors import NotFoundError, ValidationError
    from workbench.remote.config import resolve
    from workbench.runs.ids import check_run_id

    remote = resolve()
    if remote is None:
        raise ValidationError("This process logs to a local workspace, not a team server: nothing to sync.",
                              "Connect with wb.connect(URL), WORKBENCH_URL or 'workbench login URL'.")  # fmt: skip
    runs = spool_root(remote) / "runs"
    if run_id is None:
        found = sorted(e.name for e in os.scandir(runs) if RUN_ID.match(e.name)) if runs.is_dir() else []
        return [run_sync_state(runs / name, remote.url) for name in found]
    folder = runs / check_run_id(run_id)
    if not folder.is_dir():
        from workbench.remote.spool_cleaning import ENV_KEEP_HOURS

        raise NotFoundError(f"No run {run_id} in the spool of {remote.url} ({runs}).",
                            "Runs are removed from it once the server has them (after "
                            f"${ENV_KEEP_HOURS} hours, or by 'workbench sync --clean'): ask the server.")  # fmt: skip
    return run_sync_state(folder, remote.url)

"""Receiving a run's event file from a remote client, chunk by chunk, exactly once.

A run logged on a laptop writes its event file locally (the spool) and a background sender ships
it to the team server in chunks: `(offset, lines)`, where `offset` is how many bytes of the
client's file came before the chunk. The server appends a chunk only when `offset` is exactly
what it already has, so

- a chunk sent again after its answer was lost (offset below what the server has, ending within
  it) is acknowledged with the current size and not appended twice;
- a chunk after a gap (offset above) is refused with the size the server has (`OffsetConflict`,
  answered 409), and the client resends from there.

Every line is checked before anything is written (a JSON object of a known kind, with the fields
ingestion needs, of bounded size); the run's `start` event must be the first line and name the
run; its `creator` is replaced with the authenticated user, who owns the run from then on (only
they, or a maintainer once it has ended, may append to it: until then its owner's client counts the
file's bytes as its own). The start line is the only one rewritten, so the server's file is the
client's plus a constant difference, kept in `received.json` with the owner.
After each append the run is marked pending and indexed like a local run (`ingest`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from workbench import blobs
from workbench.errors import ValidationError, WorkbenchError
from workbench.names import validate_name
from workbench.permissions import make_dir, open_for_append
from workbench.runs.artifacts import check_artifact_name
from workbench.runs.events import EVENTS_FILE, run_dir, touch_heartbeat
from workbench.runs.ids import check_run_id
from workbench.runs.ingest import FINAL_STATUSES, RECEIPT_FILE, index_runs, mark_pending
from workbench.workspace import Workspace, _write_json_atomic

MAX_LINE_BYTES = 256 * 1024
DEFAULT_MAX_BLOB_BYTES = 1 << 30
MAX_KEY_CHARS = 250
STATUSES = ("queued", "running", *FINAL_STATUSES)
KINDS = ("start", "status", "param", "metric", "tag", "artifact", "input", "end")

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class OffsetConflict(WorkbenchError):
    """The chunk does not start where the server's copy ends: resend from `size`."""

    def __init__(self, run_id: str, offset: int, size: int) -> None:
        super().__init__(f"Run {run_id}: the server has {size:,} bytes of its events, the chunk starts at {offset:,}.",
                         f"Resend from offset {size}.")  # fmt: skip
        self.size = size


class NotYourRunError(WorkbenchError):
    """Appending to a run another user created (needs maintainer)."""


def _lock(run_id: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(run_id, threading.Lock())


def _receipt(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / RECEIPT_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _complete_size(path: Path) -> int:
    """The size of the event file up to its last newline; a torn tail (a crash mid-append) is cut off."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb") as handle:
        handle.seek(max(0, size - MAX_LINE_BYTES - 1))
        tail = handle.read()
    if tail.endswith(b"\n"):
        return size
    keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
    os.truncate(path, keep)
    return keep


def _ended(path: Path, size: int) -> bool:
    """Whether the run's `end` event is in the file (a run others may add to: its owner is done)."""
    with open(path, "rb") as handle:
        handle.seek(max(0, size - MAX_LINE_BYTES))
        return b'"t": "end"' in handle.read()


def received_size(ws: Workspace, run_id: str) -> int:
    """How many bytes of the client's event file the server has for `run_id` (0: none)."""
    folder = run_dir(ws, check_run_id(run_id))
    with _lock(run_id):
        size = _complete_size(folder / EVENTS_FILE)
        return size - int(_receipt(folder).get("delta", 0)) if size else 0


def _bad(run_id: str, number: int, problem: str) -> ValidationError:
    return ValidationError(f"Run {run_id}: event line {number} of the chunk {problem}.",
                           "Send the lines wb.log_* wrote, unchanged.")  # fmt: skip


# What ingestion needs of each field (the catalog's column types): a field missing is None.
_TEXT, _TIME, _INT32, _INT64, _NUMBER = "text", "an ISO time", "a 32-bit integer", "a 64-bit integer", "a number"
_BOOL, _ANY, _BLOB = "true or false", "any", "a blob id"
_FIELDS: dict[str, dict[str, str]] = {
    "start": {"kind": _TEXT, "notebook": _TEXT, "notebook_hash": _TEXT, "notebook_blob": _BLOB, "created_at": _TIME,
              "creator": _TEXT, "host": _TEXT, "pid": _INT32, "git_commit": _TEXT, "git_dirty": _BOOL,
              "python_version": _TEXT, "packages": _ANY, "kernel": _TEXT, "parent_run_id": _TEXT, "sweep_id": _TEXT,
              "pipeline_run": _TEXT},
    "status": {"at": _TIME, "pid": _INT32, "host": _TEXT},
    "metric": {"value": _NUMBER, "step": _INT64, "at": _TIME},
    "artifact": {"kind": _TEXT, "size": _INT64, "at": _TIME},
    "input": {"version": _INT32},
    "end": {"ended_at": _TIME, "duration_s": _NUMBER, "output_blob": _BLOB},
}  # fmt: skip
_REQUIRED = {"start": ("kind", "created_at"), "artifact": ("kind",), "input": ("version",)}


def _fits(kind: str, value: Any) -> bool:
    if value is None or kind == _ANY:
        return True
    if kind == _TEXT:
        return isinstance(value, str)
    if kind == _BLOB:
        try:
            return bool(blobs.check_blob_id(value))
        except WorkbenchError:
            return False
    if kind == _TIME:
        from datetime import datetime

        try:
            return isinstance(value, str) and datetime.fromisoformat(value) is not None
        except ValueError:
            return False
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _NUMBER:
        return type(value) is float or (type(value) is int and abs(value) < 2**63)
    bound = 2**31 if kind == _INT32 else 2**63
    return type(value) is int and -bound <= value < bound


def _check_event(ws: Workspace, run_id: str, number: int, event: Any) -> None:
    """Raise unless `event` is a well-formed event that ingestion can fold into the catalog's columns."""
    if not isinstance(event, dict):
        raise _bad(run_id, number, "is not a JSON object")
    kind = event.get("t")
    if kind not in KINDS:
        raise _bad(run_id, number, f"has an unknown kind {str(kind)[:40]!r} (known: {', '.join(KINDS)})")
    for field in _REQUIRED.get(kind, ()):
        if event.get(field) is None:
            raise _bad(run_id, number, f"has no {field!r}")
    for field, wanted in _FIELDS.get(kind, {}).items():
        if not _fits(wanted, event.get(field)):
            raise _bad(run_id, number, f"has a bad {field!r} (not {wanted}): {str(event.get(field))[:40]!r}")
    if kind in ("metric", "param", "tag"):
        key = event.get("key")
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
            raise _bad(run_id, number, f"has a bad key {str(key)[:80]!r}")
    elif kind == "start":
        if event.get("run_id") != run_id:
            raise _bad(run_id, number, f"starts run {str(event.get('run_id'))[:80]!r}, not {run_id}")
        validate_name(event.get("experiment"), "experiment name")
        if event.get("status") not in STATUSES:
            raise _bad(run_id, number, f"has a bad status {str(event.get('status'))[:40]!r}")
    elif kind in ("status", "end"):
        allowed = STATUSES if kind == "status" else FINAL_STATUSES
        if event.get("status") not in allowed:
            raise _bad(run_id, number, f"has a bad status {str(event.get('status'))[:40]!r}")
    elif kind == "artifact":
        check_artifact_name(event.get("name"))
        blob = event.get("blob")
        if not isinstance(blob, str):
            raise _bad(run_id, number, "has no blob")
        blobs.check_blob_id(blob)
        if not blobs.exists(ws, blob):
            raise ValidationError(f"Run {run_id}: artifact {event['name']!r} refers to blob {blob}, which the "
                                  "server does not have.", "Upload it first: PUT /api/v1/blobs/{blob}.")  # fmt: skip
    elif kind == "input" and not isinstance(event.get("name"), str):
        raise _bad(run_id, number, "has no snapshot name")


def _parse(ws: Workspace, run_id: str, lines: str, first: bool, user: str) -> tuple[bytes, int]:
    """The bytes to append for `lines` (the start line rewritten with the creator) and how much longer
    they are than the client's."""
    if lines and not lines.endswith("\n"):
        raise ValidationError(f"Run {run_id}: the chunk's last line has no newline.", "Send whole lines only.")
    out = []
    delta = 0
    for number, line in enumerate(lines.split("\n")[:-1] if lines else [], start=1):
        if len(line) > MAX_LINE_BYTES:
            raise _bad(run_id, number, f"is longer than {MAX_LINE_BYTES:,} characters")
        try:
            event = json.loads(line)
        except ValueError:
            raise _bad(run_id, number, "is not JSON") from None
        _check_event(ws, run_id, number, event)
        if event["t"] == "start":
            if not (first and number == 1):
                raise _bad(run_id, number, "is a start event after the run's first line")
            event["creator"] = user
            rewritten = json.dumps(event, allow_nan=True)
            delta = len(rewritten.encode()) - len(line.encode())
            line = rewritten
        elif first and number == 1:
            raise _bad(run_id, number, "is not the run's start event (a run's events begin with it)")
        out.append(line)
    return ("\n".join(out) + "\n").encode() if out else b"", delta


def _owner(folder: Path) -> str | None:
    receipt = _receipt(folder)
    if receipt.get("owner"):
        return receipt["owner"]
    try:
        with open(folder / EVENTS_FILE, "rb") as handle:
            start = json.loads(handle.readline() or b"{}")
    except (FileNotFoundError, ValueError):
        return None
    return start.get("creator") if isinstance(start, dict) else None


def receive(ws: Workspace, run_id: str, offset: int, lines: str, user: str, may_append_others: bool = False) -> int:
    """Append the chunk `lines`, which starts at `offset` of the client's file, to run `run_id` as
    `user`; returns how many client bytes the server has now (see the module doc)."""
    check_run_id(run_id)
    folder = run_dir(ws, run_id)
    path = folder / EVENTS_FILE
    length = len(lines.encode())
    with _lock(run_id):
        size = _complete_size(path)
        delta = int(_receipt(folder).get("delta", 0)) if size else 0
        have = size - delta if size else 0
        if offset != have:
            if offset < have and offset + length <= have:
                return have  # already appended: acknowledged again, not appended twice
            raise OffsetConflict(run_id, offset, have)
        if not length:
            if size:
                touch_heartbeat(folder)  # a keep-alive from a live run
            return have
        if size:
            owner = _owner(folder)
            if owner is not None and owner != user:
                if not may_append_others:
                    raise NotYourRunError(f"Run {run_id} was created by {owner}; you are {user}.",
                                          "Only its creator or a maintainer may log to it.")  # fmt: skip
                if not _ended(path, size):  # its owner's client still sends it, counting bytes as its own
                    raise NotYourRunError(f"Run {run_id} is still being logged by its creator {owner}.",
                                          "A maintainer may add to it once it has ended.")  # fmt: skip
        data, start_delta = _parse(ws, run_id, lines, first=size == 0, user=user)
        if size == 0:
            make_dir(folder)
            _write_json_atomic(folder / RECEIPT_FILE, {"owner": user, "delta": start_delta})
        fd = open_for_append(path)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        touch_heartbeat(folder)
        mark_pending(ws, run_id)
        have = size + len(data) - (start_delta if size == 0 else delta)
    index_runs(ws, [run_id])
    return have


def request_cancel(ws: Workspace, run_id: str, user: str, may_cancel_others: bool = False) -> bool:
    """Ask run `run_id` to stop as `user` (its creator, or with `may_cancel_others` a maintainer); False
    if it had already ended. For a run a client executes this is only the cancel file: the client's
    sender learns of it from the answers to its chunks and keep-alives (`cancel_requested`) and
    cancels the run there. A run executing on the server's host is cancelled as locally."""
    from workbench import audit
    from workbench.catalog import transaction
    from workbench.errors import NotFoundError
    from workbench.runs.cancellation import cancel_in_folder

    folder = run_dir(ws, check_run_id(run_id))
    owner = _owner(folder)
    if owner is None:
        raise NotFoundError(f"No run {run_id} on this server.", "List runs with 'workbench runs list'.")
    if owner != user and not may_cancel_others:
        raise NotYourRunError(f"Run {run_id} was created by {owner}; you are {user}.",
                              "Only its creator or a maintainer may cancel it.")  # fmt: skip
    if not cancel_in_folder(folder, signal_process=not is_remote(folder)):
        return False
    with transaction(ws) as con:
        audit.record(con, "run.cancel_requested", f"run:{run_id}", {"creator": owner})
    return True


def cancel_requested(ws: Workspace, run_id: str) -> bool:
    """Whether run `run_id` was asked to stop (`request_cancel`): what the answer to a chunk tells its client."""
    from workbench.runs.cancellation import CANCEL_FILE

    return (run_dir(ws, run_id) / CANCEL_FILE).exists()


def is_remote(folder: Path) -> bool:
    """Whether the run in `folder` was received from a remote client (its process is not on this host)."""
    return (folder / RECEIPT_FILE).is_file()


def max_blob_bytes(ws: Workspace) -> int:
    """The largest blob the server accepts: `$WORKBENCH_MAX_BLOB_BYTES`, the workspace setting
    `max_blob_bytes`, else 1 GiB."""
    from workbench.workspace import positive_setting

    return positive_setting(ws, "max_blob_bytes", "WORKBENCH_MAX_BLOB_BYTES", DEFAULT_MAX_BLOB_BYTES)


async def store_blob(ws: Workspace, blob_id: str, body: AsyncIterator[bytes], declared: str | None) -> dict[str, Any]:
    """Stream an uploaded blob to a scratch file, hashing it; store it under `blob_id` only if the
    sha256 matches (atomically: `blobs.adopt`). Over the size limit: `BodyTooLargeError` (413)."""
    import asyncio
    import hashlib

    from workbench.httpapi import BodyTooLargeError

    limit = max_blob_bytes(ws)
    too_large = BodyTooLargeError(f"Blob {blob_id} is larger than the server's limit of {limit:,} bytes.",
                                  "An admin raises it with WORKBENCH_MAX_BLOB_BYTES or the workspace "
                                  "setting max_blob_bytes.")  # fmt: skip
    if declared and declared.strip().isdigit() and int(declared) > limit:
        raise too_large
    expected = blobs.expected_sha256(blob_id)
    if blobs.exists(ws, blob_id):
        async for _ in body:  # read (and drop) the body, so the connection stays usable
            pass
        return {"blob": blob_id, "size": blobs.blob_path(ws, blob_id).stat().st_size, "stored": False}
    digest, size = hashlib.sha256(), 0
    with blobs.temp_path(ws) as tmp:
        with open(tmp, "wb") as out:
            async for piece in body:
                size += len(piece)
                if size > limit:
                    raise too_large
                digest.update(piece)
                out.write(piece)
        if digest.hexdigest() != expected:
            raise ValidationError(f"The uploaded bytes do not match blob id {blob_id} (their sha256 is "
                                  f"{digest.hexdigest()}).",
                                  "Upload the file again; it changed or was damaged.")  # fmt: skip
        await asyncio.to_thread(blobs.adopt, ws, blob_id, tmp)
    return {"blob": blob_id, "size": size, "stored": True}

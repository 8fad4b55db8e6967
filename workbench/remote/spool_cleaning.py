"""Removing from the spool what the team server has (`workbench sync --clean`, and each sender hourly).

Cleaning (`clean_spool`): a run is removed from the spool, with the blobs no other spooled run refers
to, once the server has acknowledged all of it (its blobs go first, so they are there too) and
nothing writes to it any more: it ended (an ended run is never written again), or its process is
gone (same host, pid dead, no fresh heartbeat). A refused run, one still syncing, and the runs of
the process cleaning are kept. Each sender cleans when it starts and hourly, removing synced runs
whose last event is older than `$WORKBENCH_SPOOL_KEEP_HOURS` (24 by default, like
`wandb sync --clean`'s default; `inf` keeps them); `workbench sync --clean` removes them all now.
A run is moved out of `runs/` under its send lock (atomically: a sender sees all of it or none),
then its blobs and files are deleted; a cleaning interrupted midway is finished by the next one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.remote.sender import _ends, _send_lock, _state, blobs_named, complete_size
from workbench.runs.events import EVENTS_FILE, heartbeat_age
from workbench.runs.ids import RUN_ID
from workbench.workspace import Workspace

ENV_KEEP_HOURS = "WORKBENCH_SPOOL_KEEP_HOURS"
DEFAULT_KEEP_HOURS = 24.0
TRASH_DIR = "removing"  # runs being removed, next to runs/ (the sender and sync_state see only runs/)
GONE = "gone"  # removed by another cleaning meanwhile

def keep_seconds() -> float:
    """How long a synced run stays in the spool after its last event: `$WORKBENCH_SPOOL_KEEP_HOURS`
    (24 by default; 0: as soon as it is synced and over; `inf`: until `workbench sync --clean`)."""
    try:
        hours = float(os.environ.get(ENV_KEEP_HOURS) or DEFAULT_KEEP_HOURS)
    except ValueError:
        hours = DEFAULT_KEEP_HOURS
    return (hours if hours >= 0 else DEFAULT_KEEP_HOURS) * 3600.0  # (NaN >= 0 is False)


@dataclass
class SpoolCleaning:
    """What `clean_spool` removed, and why the runs left are kept (`kept`: reason -> count)."""

    spool: str
    removed: list[str] = field(default_factory=list)  # run ids
    blobs: int = 0
    freed_bytes: int = 0
    kept: dict[str, int] = field(default_factory=dict)  # "syncing", "failed", "active", "recent"

    def to_dict(self) -> dict[str, Any]:
        return {"spool": self.spool, "removed": self.removed, "blobs": self.blobs, "freed_bytes": self.freed_bytes,
                "kept": self.kept}  # fmt: skip


def clean_spool(spool: Workspace, older_than: float = 0.0) -> SpoolCleaning:
    """Remove the runs of `spool` the server has all of and nothing writes to any more, whose last
    event is at least `older_than` seconds old, and the blobs that only they referred to (see the
    module doc). Safe while other processes log and ship: each run is checked again under its lock."""
    kept: Counter[str] = Counter()
    trash = spool.root / TRASH_DIR
    removed = []
    for folder in _run_folders(spool.runs_dir):
        reason = _keep_reason(folder, older_than)
        if reason is None:
            reason = _move_to_trash(folder, trash, older_than)
        if reason is None:
            removed.append(folder.name)
        elif reason != GONE:
            kept[reason] += 1
    doomed = _blobs_of(_run_folders(trash, any_name=True))
    if doomed:  # only then read the event files of the runs kept
        doomed -= _blobs_of(_run_folders(spool.runs_dir))
    blob_count, blob_bytes = _remove_blobs(spool, doomed)
    return SpoolCleaning(str(spool.root), removed, blob_count, blob_bytes + _empty(trash), dict(kept))


def _run_folders(parent: Path, any_name: bool = False) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(Path(e.path) for e in os.scandir(parent) if e.is_dir() and (any_name or RUN_ID.match(e.name)))


def _keep_reason(folder: Path, older_than: float) -> str | None:
    """Why the spooled run in `folder` must stay, or None when it may go."""
    state = _state(folder)
    if state.get("error"):
        return "failed"  # refused: the server does not have it
    path = folder / EVENTS_FILE
    size = complete_size(path)
    if not size or int(state.get("offset", 0)) < size:
        return "syncing"
    if _written_to(folder, _ends(path, size)):
        return "active"
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return "syncing"
    return "recent" if age < older_than else None


def _written_to(folder: Path, ended: bool) -> bool:
    """Whether a process may still write to the run (or read its folder): the process cleaning (its
    own runs, even ended ones), or, for a run without its end event (the last thing a run writes), a
    fresh heartbeat or event, a live process, or one on another host (which cannot be checked)."""
    from workbench.runs.ingest import _alive, stale_after

    start = _first_event(folder / EVENTS_FILE)
    pid, host = start.get("pid"), start.get("host")
    if pid == os.getpid() and host == socket.gethostname():
        return True
    if ended:
        return False
    try:
        quiet = time.time() - (folder / EVENTS_FILE).stat().st_mtime
    except FileNotFoundError:
        return False
    heartbeat = heartbeat_age(folder)
    quiet = quiet if heartbeat is None else min(quiet, heartbeat)
    return quiet < stale_after() or host != socket.gethostname() or _alive(pid, host)


def _first_event(path: Path) -> dict[str, Any]:
    """The start event of a run's file (pid, host), or {}."""
    try:
        with open(path, "rb") as handle:
            event = json.loads(handle.readline())
    except (OSError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


def _move_to_trash(folder: Path, trash: Path, older_than: float) -> str | None:
    """Move a removable run out of `runs/` under its send lock (a sender shipping it finishes first);
    the reason to keep it instead if it changed meanwhile."""
    try:
        with _send_lock(folder):
            reason = _keep_reason(folder, older_than)
            if reason is None:
                trash.mkdir(mode=0o700, exist_ok=True)
                os.rename(folder, trash / folder.name)
            return reason
    except FileNotFoundError:
        return GONE


def _blobs_of(folders: Iterable[Path]) -> set[str]:
    """The blob ids the event files of these run folders refer to."""
    found: set[str] = set()
    for folder in folders:
        try:
            with open(folder / EVENTS_FILE, encoding="utf-8", errors="replace") as handle:
                found.update(blobs_named(handle))
        except FileNotFoundError:
            continue
    return found


def _remove_blobs(spool: Workspace, blob_ids: Iterable[str]) -> tuple[int, int]:
    """Delete these blobs of the spool; (how many, bytes)."""
    from workbench import blobs
    from workbench.errors import WorkbenchError

    count = size = 0
    for blob_id in blob_ids:
        try:
            path = blobs.blob_path(spool, blob_id)
            length = path.stat().st_size
            path.unlink()
        except (FileNotFoundError, WorkbenchError):  # already gone, or not a blob id
            continue
        count, size = count + 1, size + length
    return count, size


def _empty(trash: Path) -> int:
    """Delete the runs moved to `trash`; the bytes freed."""
    size = 0
    for folder in _run_folders(trash, any_name=True):
        for path in folder.rglob("*"):
            try:
                size += path.stat().st_size if path.is_file() else 0
            except FileNotFoundError:  # another cleaning empties it too
                continue
        shutil.rmtree(folder, ignore_errors=True)
    return size

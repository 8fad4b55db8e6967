"""Short-lived catalog connections with bounded, jittered retry on the DuckDB file lock.

DuckDB lets only one process open a database file read-write, and while it does no other
process can open it at all. So nothing in Workbench keeps a catalog connection open: callers
take one with `connect()` or `transaction()`, do a few statements and let go. When another
process holds the file, opening is retried with jittered exponential backoff; only after a long
bounded wait (`WORKBENCH_LOCK_TIMEOUT`, default 120 s) does the user see `StoreBusyError`.
Within one process a re-entrant lock serialises threads (the Jupyter server, widgets) and lets
nested calls share the connection already open. Every write this process finishes bumps a write
generation, part of the change token of the in-process read cache (`workbench.catalog.read_cache`).

A long-running process that owns the workspace (the team server, `workbench server`) instead
*holds* the catalog: `hold(ws)` opens the database once for the life of the process, and from then
on `connect()` hands each thread a cursor of its own on it, without the process lock. That is
DuckDB's own concurrency model (one process, many threads, MVCC): reads run concurrently and
never wait for a writer. Write transactions are serialised by a lock of their own (DuckDB would
abort one of two concurrent transactions touching the same rows with a conflict error), and a
conflict that happens anyway is `WriteConflictError`, which `retry_conflicts` retries after a short
pause. While the catalog is held, other processes cannot open it: they are told at once who holds
it (the holder file next to it) instead of waiting for the lock. The embedded default (no
`hold()`) is unchanged.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from workbench.errors import CatalogCorruptError, StoreBusyError, WorkbenchError, WriteConflictError
from workbench.workspace import Workspace

DEFAULT_LOCK_TIMEOUT_S = 120.0

_process_lock = threading.RLock()
_local = threading.local()
_migrated: set[str] = set()
_write_generation = 0
_generation_lock = threading.Lock()  # not the process lock: held-mode writers never take that one
#: Called after every write this process finishes (`add_write_listener`).
_write_listeners: set[Callable[[], None]] = set()

#: Catalogs this process holds open for its whole life (`hold`), by catalog path.
_held: dict[str, duckdb.DuckDBPyConnection] = {}
#: Serialises the write transactions on held catalogs (readers never take it).
_write_lock = threading.RLock()
#: Attempts `retry_conflicts` makes before letting a write conflict reach the caller.
CONFLICT_ATTEMPTS = 6
HOLDER_SUFFIX = ".holder"

T = TypeVar("T")


def lock_timeout() -> float:
    try:
        return float(os.environ.get("WORKBENCH_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT_S))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT_S


def write_generation() -> int:
    """How many catalog writes (transactions, migrations, catalog swaps) this process has finished.

    Part of the read cache's change token: a write by this process is seen by its next cached
    read without relying on file timestamps, whose granularity can hide a quick second write.
    """
    return _write_generation


def _note_write() -> None:
    global _write_generation
    with _generation_lock:
        _write_generation += 1
    for listener in tuple(_write_listeners):
        try:
            listener()
        except Exception:  # a listener's trouble is not the writer's
            _write_listeners.discard(listener)


def add_write_listener(listener: Callable[[], None]) -> None:
    """Call `listener()` (in the writing thread, after the commit) whenever this process finishes a
    catalog write: the team server's change feed wakes its waiting clients with it. It must be quick
    and not touch the catalog; one that raises is dropped."""
    _write_listeners.add(listener)


def in_connection() -> bool:
    """Whether this thread is inside `connect()`: its reads may see its own uncommitted writes."""
    return getattr(_local, "con", None) is not None


def _is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def _open_with_retry(path: str) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + lock_timeout()
    delay = 0.005
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise WorkbenchError(
                    f"Cannot open the catalog {path}: {exc}",
                    "Check the file's permissions, or run 'workbench doctor'.",
                ) from exc
            _refuse_if_held_elsewhere(path, exc)
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"The catalog {path} stayed locked by another process for {lock_timeout():.0f} s.",
                    "A process may be stuck holding it; find it with 'fuser' and stop it, or "
                    "raise WORKBENCH_LOCK_TIMEOUT.",
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, 0.25)
        except duckdb.Error as exc:  # DuckDB refuses a file whose blocks fail their checksums
            if "corrupt" not in str(exc).lower():
                raise
            raise CatalogCorruptError(
                f"The catalog {path} is damaged and cannot be opened ({exc}).",
                "Run 'workbench doctor --rebuild-catalog': it moves the file aside and rebuilds the catalog "
                "from the run folders and says what only the catalog held (docs/reliability.md).",
            ) from exc


def _protect_catalog(ws: Workspace) -> None:
    """DuckDB creates the file with the umask; give it the workspace's file mode (0600 if private)."""
    from workbench.permissions import protect

    try:
        protect(ws.catalog_path)
    except PermissionError:
        pass  # a teammate's file in a group-shared workspace: its owner set the mode


@contextmanager
def connect(ws: Workspace) -> Iterator[duckdb.DuckDBPyConnection]:
    """A catalog connection in autocommit mode, migrated to the current schema."""
    held = _held.get(str(ws.catalog_path))
    if held is not None:
        with _thread_cursor(held) as con:
            yield con
        return
    with _process_lock:
        existing = getattr(_local, "con", None)
        if existing is not None:
            yield existing
            return
        if not ws.root.is_dir():
            from workbench.errors import WorkspaceNotFoundError

            raise WorkspaceNotFoundError(
                f"Workspace folder {ws.root} does not exist.", "Create it with 'workbench init'."
            )
        con = _open_with_retry(str(ws.catalog_path))
        _local.con = con
        try:
            key = str(ws.catalog_path)
            if key not in _migrated:
                from workbench.catalog.migrate import migrate, schema_version

                before = schema_version(con)
                if migrate(con) != before:
                    _note_write()
                _protect_catalog(ws)
                _migrated.add(key)
            yield con
        finally:
            _local.con = None
            con.close()


@contextmanager
def transaction(ws: Workspace) -> Iterator[duckdb.DuckDBPyConnection]:
    """One short atomic transaction: everything in the block commits, or nothing does."""
    with connect(ws) as con, _serialised_writes(ws):
        if getattr(_local, "in_tx", False):
            yield con  # nested: the outer transaction commits
            return
        con.execute("BEGIN TRANSACTION")
        _local.in_tx = True
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")
        finally:
            _local.in_tx = False
            _note_write()  # after COMMIT/ROLLBACK, so a token taken from here on differs from older ones


def forget_migrations() -> None:
    """Make the next connection check the schema again (after a catalog is replaced)."""
    _migrated.clear()
    _note_write()


# --------------------------------------------------------------------------------------------
# Held mode: one process keeps the catalog open for its life


def hold(ws: Workspace, holder: str = "another Workbench process") -> None:
    """Open `ws`'s catalog for the rest of this process's life (until `release`); see the module doc.

    `holder` says who holds it (e.g. "workbench server at https://host:8686"): other processes that
    try to open the catalog meanwhile are refused at once with it, instead of waiting for the lock.
    """
    key = str(ws.catalog_path)
    with _write_lock:
        if key in _held:
            return
        with _process_lock:  # no embedded connection of this process may be open on it meanwhile
            if getattr(_local, "con", None) is not None:
                raise WorkbenchError("Cannot hold the catalog inside an open catalog connection.")
            with connect(ws):  # creates and migrates it like any first use
                pass
            db = _open_with_retry(key)
        _held[key] = db
        _write_holder(ws.catalog_path, holder)


def release(ws: Workspace) -> None:
    """Close a catalog `hold` opened (a checkpoint is written); others may open it again."""
    key = str(ws.catalog_path)
    with _write_lock:
        db = _held.pop(key, None)
        if db is None:
            return
        try:
            db.close()
        finally:
            _holder_path(ws.catalog_path).unlink(missing_ok=True)


def is_held(ws: Workspace) -> bool:
    """Whether this process holds `ws`'s catalog open (`hold`)."""
    return str(ws.catalog_path) in _held


@contextmanager
def paused_writes(ws: Workspace) -> Iterator[None]:
    """No catalog write of this process starts or finishes meanwhile (a backup's point in time).

    On a held catalog this takes the lock that serialises write transactions; otherwise the caller's
    `connect()` already keeps every other process and thread out, and this does nothing."""
    if str(ws.catalog_path) not in _held:
        yield
        return
    with _write_lock:
        yield


def retry_conflicts(call: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """`call()`, called again after a short jittered pause when its write hit a conflict.

    `call` must be one whole library operation (its transaction rolled back on the conflict, so
    running it again is safe); after `attempts` the `WriteConflictError` reaches the caller.
    """
    delay = 0.005
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except WriteConflictError:
            if attempt == attempts:
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def _thread_cursor(db: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """This thread's cursor on a held database (nested calls share it), closed when the outermost ends."""
    existing = getattr(_local, "con", None)
    if existing is not None:
        yield existing
        return
    con = db.cursor()
    _local.con = con
    try:
        yield con
    finally:
        _local.con = None
        con.close()


def _is_write_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.TransactionException) and "conflict" in str(exc).lower()


@contextmanager
def _serialised_writes(ws: Workspace) -> Iterator[None]:
    """On a held catalog: one write transaction at a time; a DuckDB conflict becomes `WriteConflictError`."""
    if str(ws.catalog_path) not in _held:
        yield
        return
    with _write_lock:
        try:
            yield
        except duckdb.Error as exc:
            if not _is_write_conflict(exc):
                raise
            raise WriteConflictError(
                f"A write to the catalog conflicted with another one and was rolled back: {exc}",
                "Nothing was changed; try again.",
            ) from exc


def _holder_path(catalog: str | os.PathLike[str]) -> Path:
    path = Path(catalog)
    return path.with_name(path.name + HOLDER_SUFFIX)


def _write_holder(catalog: Path, holder: str) -> None:
    from workbench.permissions import protect

    path = _holder_path(catalog)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "holder": holder}))
    protect(tmp)
    os.replace(tmp, path)


def _refuse_if_held_elsewhere(path: str, exc: BaseException) -> None:
    """Raise `StoreBusyError` at once when a live process `hold`s the catalog: waiting would not help."""
    try:
        info = json.loads(_holder_path(path).read_text())
        pid, holder = int(info["pid"]), str(info["holder"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # left behind by a process that died: the lock is someone else's
    except PermissionError:
        pass  # alive, another user's
    raise StoreBusyError(
        f"The catalog {path} is held open by {holder} (pid {pid}).",
        "Use it through that server, or stop it first.",
    ) from exc

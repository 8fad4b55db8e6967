"""Short-lived catalog connections with bounded, jittered retry on the DuckDB file lock.

DuckDB lets only one process open a database file read-write, and while it does no other
process can open it at all. So nothing in Workbench keeps a catalog connection open: callers
take one with `connect()` or `transaction()`, do a few statements and let go. When another
process holds the file, opening is retried with jittered exponential backoff; only after a long
bounded wait (`WORKBENCH_LOCK_TIMEOUT`, default 120 s) does the user see `StoreBusyError`.
Within one process a re-entrant lock serialises threads (the Jupyter server, widgets) and lets
nested calls share the connection already open.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from workbench.errors import StoreBusyError, WorkbenchError
from workbench.workspace import Workspace

DEFAULT_LOCK_TIMEOUT_S = 120.0

_process_lock = threading.RLock()
_local = threading.local()
_migrated: set[str] = set()


def lock_timeout() -> float:
    try:
        return float(os.environ.get("WORKBENCH_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT_S))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT_S


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
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"The catalog {path} stayed locked by another process for {lock_timeout():.0f} s.",
                    "A process may be stuck holding it; find it with 'fuser' and stop it, or "
                    "raise WORKBENCH_LOCK_TIMEOUT.",
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, 0.25)


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
                from workbench.catalog.migrate import migrate

                migrate(con)
                _protect_catalog(ws)
                _migrated.add(key)
            yield con
        finally:
            _local.con = None
            con.close()


@contextmanager
def transaction(ws: Workspace) -> Iterator[duckdb.DuckDBPyConnection]:
    """One short atomic transaction: everything in the block commits, or nothing does."""
    with connect(ws) as con:
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


def forget_migrations() -> None:
    """Make the next connection check the schema again (after a catalog is replaced)."""
    _migrated.clear()

"""`workbench doctor`: check a workspace's integrity and repair what is safe to repair.

Checks are small functions registered with `@check`; other modules (runs, registry) add their
own by importing this module and decorating a function, so the doctor knows about every concept
without this file knowing their internals. Each check yields `Finding`s; with `fix=True` a check
repairs what it safely can (leftover scratch files, orphan blobs past a grace period) and says so.
Nothing a user registered is ever deleted.

Stored files are also checked against the hash they were stored under (`damaged_files`): a file
that no longer matches is listed as damaged, since every reader refuses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from workbench import blobs
from workbench.catalog import connect, transaction
from workbench.catalog.migrate import available_migrations, schema_version
from workbench.workspace import Workspace

#: Blobs and scratch files younger than this may belong to work in progress: never removed.
GRACE_SECONDS = 3600
#: Damaged files named in one finding (the rest are counted).
LISTED = 20


@dataclass
class Finding:
    check: str
    severity: str  # "ok" | "warning" | "error"
    message: str
    fixable: bool = False
    fixed: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


CheckFn = Callable[[Workspace, bool], Iterable[Finding]]
_CHECKS: list[tuple[str, CheckFn]] = []


def check(name: str, first: bool = False) -> Callable[[CheckFn], CheckFn]:
    """Register a check under `name` (run in registration order; `first` runs it before the
    others, for checks that bring the catalog up to date, e.g. folding pending run events)."""

    def decorate(fn: CheckFn) -> CheckFn:
        if any(existing == name for existing, _ in _CHECKS):
            return fn
        _CHECKS.insert(0, (name, fn)) if first else _CHECKS.append((name, fn))
        return fn

    return decorate


def referenced_blobs(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Every blob id the catalog refers to: any text column named like `*blob*`, in any table."""
    columns = con.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE column_name ILIKE '%blob%' AND data_type = 'VARCHAR'"
    ).fetchall()
    found: set[str] = set()
    for table, column in columns:
        rows = con.execute(f'SELECT DISTINCT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL')
        found.update(value for (value,) in rows.fetchall())
    return found


def damaged_files(ws: Workspace, labelled: Iterable[tuple[str, str]]) -> list[str]:
    """`path (label)` of each present sha256-named blob whose bytes do not match its id.

    `labelled` is (blob id, what it belongs to); missing files are left to the callers' own
    "missing" findings. Each file is hashed once per process however often it is listed.
    """
    damaged = []
    for blob_id, label in labelled:
        path = blobs.blob_path(ws, blob_id)
        if path.is_file() and not blobs.is_intact(path, blobs.expected_sha256(blob_id)):
            damaged.append(f"{path} ({label})")
    return damaged


def damaged_message(damaged: list[str], kind: str) -> str:
    """One line naming damaged files (the first `LISTED`) and what to do about them."""
    listed = "; ".join(damaged[:LISTED]) + (f"; and {len(damaged) - LISTED} more" if len(damaged) > LISTED else "")
    return (
        f"{len(damaged)} {kind} file(s) damaged (bytes do not match their hash; they will not be read): {listed}. "
        "Restore them from a backup or log/register them again"
    )


@check("catalog")
def _catalog(ws: Workspace, fix: bool) -> Iterator[Finding]:
    with connect(ws) as con:
        version = schema_version(con)
        tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        for table in tables:
            con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    newest = available_migrations()[-1][0]
    yield Finding("catalog", "ok", f"catalog readable: {len(tables)} tables, schema {version}/{newest}")


@check("snapshot data")
def _snapshot_data(ws: Workspace, fix: bool) -> Iterator[Finding]:
    with connect(ws) as con:
        rows = con.execute("SELECT name, version, blob, row_count, file_sha256 FROM snapshots").fetchall()
    bad = 0
    damaged: list[str] = []
    unrecorded: dict[str, str] = {}  # legacy rows (no file hash) whose data checked out: blob -> sha256
    reader = duckdb.connect()
    for name, version, blob_id, row_count, file_sha256 in rows:
        path = blobs.blob_path(ws, blob_id)
        if not path.is_file():
            bad += 1
            yield Finding("snapshot data", "error", f"{name}@{version}: data file {path} is missing")
            continue
        legacy_sha256 = None if file_sha256 else _legacy_file_sha256(path, blob_id)
        if not (blobs.is_intact(path, file_sha256) if file_sha256 else legacy_sha256):
            bad += 1
            damaged.append(f"{path} (snapshot {name}@{version})")
            continue
        if legacy_sha256:
            unrecorded[blob_id] = legacy_sha256
        try:
            actual = reader.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0]
        except duckdb.Error as exc:
            bad += 1
            yield Finding("snapshot data", "error", f"{name}@{version}: data file unreadable: {exc}")
            continue
        if actual != row_count:
            bad += 1
            yield Finding("snapshot data", "error", f"{name}@{version}: {actual} rows on disk, {row_count} recorded")
    reader.close()
    if damaged:
        yield Finding("snapshot data", "error", damaged_message(damaged, "snapshot data"))
    if unrecorded:
        if fix:
            _record_file_hashes(ws, unrecorded)
        yield Finding("snapshot data", "warning",
                      f"{len(unrecorded)} snapshot data file(s) from an older Workbench have no recorded file hash "
                      "(each read re-checks their data, which is slower); --fix records it",
                      fixable=True, fixed=fix)  # fmt: skip
    if not bad:
        yield Finding("snapshot data", "ok", f"{len(rows)} snapshot versions, all data files present")


def _legacy_file_sha256(path: Path, blob_id: str) -> str | None:
    """The sha256 of a snapshot file recorded without one, if its data matches the digest its id
    names (the rule `snapshots.store.data_path` applies); None if damaged or changed meanwhile."""
    from workbench.snapshots.store import data_digest

    before = path.stat()
    if not blobs.is_intact(path, blobs.expected_sha256(blob_id), digest=data_digest):
        return None
    sha256 = blobs.sha256_file(path)
    after = path.stat()
    same = (before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (
        after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns)  # fmt: skip
    return sha256 if same else None


def _record_file_hashes(ws: Workspace, hashes: dict[str, str]) -> None:
    """Record the file hash of legacy snapshot files whose data digest was just checked."""
    with transaction(ws) as con:
        for blob_id, sha256 in hashes.items():
            con.execute(
                "UPDATE snapshots SET file_sha256 = ? WHERE blob = ? AND file_sha256 IS NULL", [sha256, blob_id]
            )


@check("orphan blobs")
def _orphans(ws: Workspace, fix: bool) -> Iterator[Finding]:
    with connect(ws) as con:
        referenced = referenced_blobs(con)
    now = time.time()
    orphans = [b for b in blobs.iter_blob_ids(ws) if b not in referenced]
    old = [b for b in orphans if now - blobs.blob_path(ws, b).stat().st_mtime > GRACE_SECONDS]
    if not orphans:
        yield Finding("orphan blobs", "ok", "no unreferenced files in the blob store")
        return
    removed = 0
    if fix:
        for blob_id in old:
            blobs.blob_path(ws, blob_id).unlink(missing_ok=True)
            removed += 1
    young = len(orphans) - len(old)
    message = f"{len(orphans)} unreferenced blob(s) (left by interrupted work)"
    if young:
        message += f"; {young} younger than {GRACE_SECONDS // 60} min kept (may be in progress)"
    yield Finding("orphan blobs", "warning", message, fixable=bool(old), fixed=fix and removed > 0)


@check("scratch files")
def _scratch(ws: Workspace, fix: bool) -> Iterator[Finding]:
    if not ws.tmp_dir.is_dir():
        return
    now = time.time()
    stale = [p for p in ws.tmp_dir.iterdir() if now - p.stat().st_mtime > GRACE_SECONDS]
    if not stale:
        yield Finding("scratch files", "ok", "no stale scratch files")
        return
    if fix:
        import shutil

        for path in stale:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    yield Finding(
        "scratch files", "warning", f"{len(stale)} stale scratch file(s) in {ws.tmp_dir}",
        fixable=True, fixed=fix,
    )  # fmt: skip


def run_checks(ws: Workspace, fix: bool = False) -> list[Finding]:
    """Run every registered check; a check that crashes is reported as an error finding."""
    _load_plugin_checks()
    findings: list[Finding] = []
    for name, fn in _CHECKS:
        try:
            findings.extend(fn(ws, fix))
        except Exception as exc:  # report, keep checking the rest
            findings.append(Finding(name, "error", f"check failed: {type(exc).__name__}: {exc}"))
    return findings


def _load_plugin_checks() -> None:
    """Import the modules that register checks of their own, if they exist."""
    import importlib

    for module in ("workbench.runs.doctor", "workbench.models.doctor"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise

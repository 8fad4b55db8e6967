"""Backing up a workspace while it is in use: `workbench server backup`, `POST /api/v1/backup`.

The result is a new workspace folder that `workbench doctor --home DEST` finds clean and that
`workbench server --home DEST` serves. It is built in a hidden staging folder beside DEST and renamed
into place at the end, so a backup that fails leaves nothing behind. In order:

1. The catalog, copied by DuckDB itself (`ATTACH` a new file, `COPY FROM DATABASE`) in one
   transaction while this process's catalog writes are paused (`paused_writes`: on the team server,
   the lock that serialises write transactions; readers go on). That transaction is the backup's
   point in time: snapshots, models, aliases, users and the audit log are as they were then.
2. The workspace's other files (`config.json`, run folders, model alias files, prediction logs, ...),
   copied after it. Append-only logs (`*.jsonl`) are copied up to their last complete line. The run
   tables of the copy are then re-indexed from its run folders (the folders are the record, the
   catalog their index), so a run that logged more while the backup ran is whole in it.
3. Model alias files are rewritten from the copied catalog (a move after the point in time is not in
   the backup), and every blob the copied catalog refers to is copied, after the catalog, and checked
   against its hash. Blobs are content-addressed and never deleted while the server runs, so each one
   the point in time refers to is still there; blobs nobody refers to are left out.

Nothing in the workspace being backed up is changed, except the audit entry `workspace.backed_up`
recorded at the end under the name of whoever asked for the backup.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench import blobs
from workbench.errors import StoreBusyError, ValidationError
from workbench.workspace import CONFIG_FILE, Workspace

#: Workspace entries not copied as files: the catalog (copied by DuckDB), its lock-holder file,
#: scratch space, blobs (copied by reference) and the pending-index markers (the copy is re-indexed).
_SKIPPED = {"blobs", "tmp", "pending"}
#: Setting naming the folder the team server writes backups into (`POST /api/v1/backup`).
BACKUP_DIR_SETTING = "backup_dir"
_CHUNK = 1 << 20
_running = threading.Lock()


def backup_root(ws: Workspace) -> Path:
    """Where the team server writes backups: the workspace setting `backup_dir` (relative to the
    workspace folder's parent), else `<workspace>-backups` beside the workspace folder."""
    configured = ws.setting(BACKUP_DIR_SETTING)
    if configured is not None and (not isinstance(configured, str) or not configured.strip()):
        raise ValidationError(f"The workspace setting {BACKUP_DIR_SETTING!r} must be a folder path, "
                              f"not {configured!r}.")  # fmt: skip
    default = ws.root.parent / f"{ws.root.name}-backups"
    root = (ws.root.parent / Path(configured).expanduser()) if configured else default
    return Path(os.path.abspath(root))


def default_name() -> str:
    return "backup-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def check_destination(ws: Workspace, dest: str | os.PathLike[str]) -> Path:
    """`dest` as an absolute path, if a backup of `ws` may be written there: a folder that does not
    exist yet (its parent does) or is empty, neither inside the workspace nor containing it."""
    if not str(dest).strip():
        raise ValidationError("Give the backup's destination folder.")
    path = Path(os.path.abspath(Path(dest).expanduser()))
    root = Path(os.path.realpath(ws.root))
    real = Path(os.path.realpath(path))
    if real == root or root in real.parents or real in root.parents:
        raise ValidationError(f"Cannot back up {ws.root} into {path}: the backup must be outside the workspace "
                              "folder (and not contain it).", "Choose a folder elsewhere.")  # fmt: skip
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ValidationError(f"Cannot back up into {path}: it exists and is not a folder.", "Choose a new folder.")
    if path.is_dir() and any(path.iterdir()):
        raise ValidationError(f"Cannot back up into {path}: the folder is not empty.",
                              "Choose a new or empty folder; a backup never overwrites files.")  # fmt: skip
    if not path.parent.is_dir():
        raise ValidationError(f"Cannot back up into {path}: the folder {path.parent} does not exist.",
                              "Create it first, or choose another destination.")  # fmt: skip
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ValidationError(f"Cannot back up into {path}: {path.parent} is not writable by this user.")
    return path


def named_destination(ws: Workspace, name: str | None) -> Path:
    """The folder `name` in the server's backup folder (`backup_root`), checked; `name` is one folder
    name (letters, digits, '_', '-', '.'), never a path."""
    import re

    name = default_name() if name is None else str(name)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", name):
        raise ValidationError(f"Invalid backup name {name!r}.",
                              "Give a folder name (letters, digits, '_', '-', '.'), not a path: the server writes "
                              f"backups into its backup folder, {backup_root(ws)}.")  # fmt: skip
    from workbench.permissions import make_dir

    make_dir(backup_root(ws))
    return check_destination(ws, backup_root(ws) / name)


def backup(ws: Workspace, dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Back `ws` up into the new folder `dest` (see the module doc); returns what was copied.

    Works on a held catalog (the team server) and on a folder no process holds alike."""
    from workbench.permissions import secure_root

    dest_path = check_destination(ws, dest)
    if not _running.acquire(blocking=False):
        raise StoreBusyError("Another backup is running in this process.", "Wait for it to finish, then try again.")
    started = time.monotonic()
    staging = dest_path.parent / f".{dest_path.name}.partial-{secrets.token_hex(4)}"
    try:
        staging.mkdir(mode=0o700)
        os.chmod(staging, stat.S_IMODE(ws.root.stat().st_mode))
        copy = Workspace(staging)
        point = _copy_catalog(ws, copy)
        files = _copy_files(ws, copy)
        for folder in (copy.blobs_dir, copy.tmp_dir):
            folder.mkdir(exist_ok=True)
            os.chmod(folder, stat.S_IMODE(staging.stat().st_mode))
        from workbench.runs.ingest import ingest_all

        runs = ingest_all(copy)
        _rewrite_alias_files(copy)
        copied, size, damaged = _copy_blobs(ws, copy)
        if dest_path.is_dir():
            dest_path.rmdir()  # checked empty; a backup never overwrites
        os.replace(staging, dest_path)
        secure_root(dest_path, Workspace(dest_path).setting("group"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _running.release()
    result = {"path": str(dest_path), "at": point["at"], "audit_id": point["audit_id"], "runs": runs,
              "files": files, "blobs": copied, "blob_bytes": size, "damaged": damaged,
              "seconds": round(time.monotonic() - started, 3)}  # fmt: skip
    _audit(ws, result)
    return result


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _copy_catalog(ws: Workspace, copy: Workspace) -> dict[str, Any]:
    """The catalog copied by DuckDB in one transaction while writes are paused: the point in time."""
    from workbench.catalog.connection import connect, paused_writes

    alias = f"wb_backup_{secrets.token_hex(6)}"
    with connect(ws) as con:
        source = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH {_quote(str(copy.catalog_path))} AS {alias}")
        try:
            with paused_writes(ws):
                con.execute("BEGIN TRANSACTION")
                try:
                    con.execute(f'COPY FROM DATABASE "{source}" TO {alias}')
                    audit_id = con.execute(f'SELECT coalesce(max(id), 0) FROM "{source}".audit').fetchone()[0]
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                at = datetime.now(timezone.utc).isoformat()
        finally:
            con.execute(f"DETACH {alias}")
    return {"audit_id": int(audit_id), "at": at}


def _copy_files(ws: Workspace, copy: Workspace) -> int:
    """Every file of the workspace but the catalog, blobs and scratch space; `*.jsonl` up to their last
    complete line. Symbolic links are not followed. Returns how many files were copied."""
    count = 0
    for entry in sorted(os.scandir(ws.root), key=lambda e: e.name):
        if entry.name in _SKIPPED or entry.name.startswith(ws.catalog_path.name) or entry.is_symlink():
            continue
        if entry.is_dir():
            count += _copy_tree(Path(entry.path), copy.root / entry.name)
        elif entry.is_file() and not entry.name.endswith(".tmp"):
            count += _copy_file(Path(entry.path), copy.root / entry.name)
    if not (copy.root / CONFIG_FILE).is_file():
        raise ValidationError(f"{ws.root} has no {CONFIG_FILE}: not a workspace.")
    return count


def _copy_tree(source: Path, target: Path) -> int:
    target.mkdir()
    shutil.copymode(source, target)
    count = 0
    for entry in os.scandir(source):
        if entry.is_symlink():
            continue
        if entry.is_dir():
            count += _copy_tree(Path(entry.path), target / entry.name)
        elif entry.is_file() and not entry.name.endswith(".tmp"):
            count += _copy_file(Path(entry.path), target / entry.name)
    return count


def _copy_file(source: Path, target: Path) -> int:
    try:
        if source.suffix == ".jsonl":
            data = source.read_bytes()
            target.write_bytes(data[: data.rfind(b"\n") + 1])
        else:
            shutil.copyfile(source, target)
    except FileNotFoundError:
        return 0  # removed meanwhile (a file renamed into place, a finished spool): not part of the backup
    shutil.copymode(source, target)
    return 1


def _rewrite_alias_files(copy: Workspace) -> None:
    from workbench.catalog.connection import connect
    from workbench.models.registry import write_alias_file

    with connect(copy) as con:
        names = [n for (n,) in con.execute("SELECT DISTINCT name FROM model_versions ORDER BY name").fetchall()]
    for name in names:
        write_alias_file(copy, name)


def _copy_blobs(ws: Workspace, copy: Workspace) -> tuple[int, int, list[str]]:
    """Every blob the copied catalog refers to, each checked against its hash after it is written.
    Returns (files copied, bytes, blob ids missing or damaged in the source, left out)."""
    from workbench.catalog.connection import connect
    from workbench.doctor import referenced_blobs

    with connect(copy) as con:
        wanted = sorted(referenced_blobs(con))
        snapshot_hashes = dict(con.execute("SELECT blob, file_sha256 FROM snapshots").fetchall())
    mode = stat.S_IMODE(copy.root.stat().st_mode)
    copied = size = 0
    damaged: list[str] = []
    for blob_id in wanted:
        try:
            source, target = blobs.blob_path(ws, blob_id), blobs.blob_path(copy, blob_id)
        except Exception:  # not a blob id (a column named like one holding something else)
            continue
        expected = snapshot_hashes[blob_id] if blob_id in snapshot_hashes else blobs.expected_sha256(blob_id)
        if target.is_file():
            continue
        target.parent.mkdir(exist_ok=True)
        os.chmod(target.parent, mode)
        try:
            written = _copy_hashed(source, target)
        except FileNotFoundError:
            damaged.append(blob_id)
            continue
        if (expected and written != expected) or _sha256(target) != written:
            target.unlink()
            damaged.append(blob_id)
            continue
        os.chmod(target, mode & 0o666)
        copied += 1
        size += target.stat().st_size
    return copied, size, damaged


def _copy_hashed(source: Path, target: Path) -> str:
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    return blobs.sha256_file(path)


def _audit(ws: Workspace, result: dict[str, Any]) -> None:
    from workbench import audit
    from workbench.catalog.connection import retry_conflicts, transaction

    def record() -> None:
        with transaction(ws) as con:
            audit.record(con, "workspace.backed_up", f"backup:{Path(result['path']).name}",
                         details={k: result[k] for k in ("path", "audit_id", "runs", "blobs", "blob_bytes",
                                                         "damaged")})  # fmt: skip

    retry_conflicts(record)

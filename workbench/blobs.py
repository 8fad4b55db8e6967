"""Content-addressed files inside the workspace: written whole or not at all.

A blob is written to a temporary file on the same filesystem, flushed to disk, then renamed
into place, so a crash (even kill -9) leaves either no blob or a complete one, never half a
file. Blob ids are hex digests plus an optional extension (`<sha256>.parquet`), checked against
a strict pattern before they are turned into paths, so an id can never escape the store.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.workspace import Workspace

_BLOB_ID = re.compile(r"^[0-9a-f]{16,128}(\.[a-z0-9]{1,12})?$")
_CHUNK = 1 << 20


def check_blob_id(blob_id: str) -> str:
    if not isinstance(blob_id, str) or not _BLOB_ID.match(blob_id):
        raise WorkbenchError(f"Invalid blob id {blob_id!r}.")
    return blob_id


def blob_path(ws: Workspace, blob_id: str) -> Path:
    """Where a blob lives (`blobs/ab/<id>`), whether or not it exists yet."""
    check_blob_id(blob_id)
    return ws.blobs_dir / blob_id[:2] / blob_id


def exists(ws: Workspace, blob_id: str) -> bool:
    return blob_path(ws, blob_id).is_file()


@contextmanager
def temp_path(ws: Workspace, suffix: str = "") -> Iterator[Path]:
    """A fresh path in the workspace's scratch folder, removed afterwards if still there."""
    ws.tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=ws.tmp_dir, suffix=suffix)
    os.close(fd)
    os.unlink(name)
    path = Path(name)
    try:
        yield path
    finally:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def adopt(ws: Workspace, blob_id: str, finished_file: Path) -> Path:
    """Move a fully written file into the store under `blob_id` (no-op if already stored)."""
    target = blob_path(ws, blob_id)
    if target.is_file():
        finished_file.unlink(missing_ok=True)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _fsync(finished_file)
    os.replace(finished_file, target)
    return target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def put_file(ws: Workspace, source: Path, extension: str = "") -> str:
    """Copy `source` into the store; return its blob id (sha256 of the bytes + extension)."""
    with temp_path(ws) as tmp:
        shutil.copyfile(source, tmp)
        blob_id = sha256_file(tmp) + extension
        adopt(ws, blob_id, tmp)
    return blob_id


def put_bytes(ws: Workspace, data: bytes, extension: str = "") -> str:
    blob_id = hashlib.sha256(data).hexdigest() + extension
    if exists(ws, blob_id):
        return blob_id
    with temp_path(ws) as tmp:
        tmp.write_bytes(data)
        adopt(ws, blob_id, tmp)
    return blob_id


def iter_blob_ids(ws: Workspace) -> Iterator[str]:
    """Every blob id present on disk (for integrity checks and garbage collection)."""
    if not ws.blobs_dir.is_dir():
        return
    for shard in ws.blobs_dir.iterdir():
        if shard.is_dir():
            for entry in shard.iterdir():
                if _BLOB_ID.match(entry.name):
                    yield entry.name

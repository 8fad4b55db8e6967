"""Content-addressed files inside the workspace: written whole or not at all.

A blob is written to a temporary file on the same filesystem, flushed to disk, then renamed
into place, so a crash (even kill -9) leaves either no blob or a complete one, never half a
file. Blob ids are hex digests plus an optional extension (`<sha256>.skops`), checked against
a strict pattern before they are turned into paths, so an id can never escape the store.

Nothing is read from the store without being verified first (`read_verified`, `verified_path`):
the file is hashed and compared with the hash it was stored under, by default the hex part of its
id (the sha256 of its bytes). Snapshot Parquet files are named by a digest of their *data*, so
their callers pass the file's recorded sha256 instead. A file that does not match raises
`BlobIntegrityError` instead of being parsed, which matters most for model files: a swapped
`.skops` file must never reach the model loader. A missing file raises `NotFoundError`.

`read_verified` hashes the very bytes it returns, so it needs no cache. `verified_path` hands a
path to another reader (DuckDB), so it hashes the file and, to spare a long-lived process
(a model server, JupyterLab) re-hashing large files on every read, remembers success keyed by
(path, st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns). ctime cannot be set by users, so
any rewrite, rename-in or replacement of the file changes the key and forces a new check.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.errors import BlobIntegrityError, NotFoundError, WorkbenchError
from workbench.permissions import file_mode, make_dir
from workbench.workspace import Workspace

_BLOB_ID = re.compile(r"^[0-9a-f]{16,128}(\.[a-z0-9]{1,12})?$")
_CHUNK = 1 << 20
#: A function computing the value a file is checked against (sha256 of its bytes by default).
Digest = Callable[[Path], str]
#: Successful checks of this process: (stat identity, digest function, expected value).
_VERIFIED: set[tuple[object, ...]] = set()
_VERIFIED_MAX = 4096


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
    make_dir(ws.tmp_dir)
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
    _prepare(target, finished_file)
    os.replace(finished_file, target)
    return target


def _prepare(target: Path, finished_file: Path) -> None:
    """Make the shard folder and give the file the workspace's mode (0600 if private) before it
    becomes visible, then flush it to disk."""
    make_dir(target.parent)
    os.chmod(finished_file, file_mode(target.parent))
    _fsync(finished_file)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def adopt_new(ws: Workspace, blob_id: str, finished_file: Path) -> bool:
    """Like `adopt`, but never replaces a stored file, even when two processes race: the file
    is hard-linked into place (atomic create-if-absent). False, with `finished_file` left where
    it is, when a file already holds `blob_id`; callers that record the stored file's hash need
    to know which copy won."""
    target = blob_path(ws, blob_id)
    _prepare(target, finished_file)
    try:
        os.link(finished_file, target)
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: check, then rename (not race-free)
        if target.is_file():
            return False
        os.replace(finished_file, target)
        return True
    finished_file.unlink(missing_ok=True)
    return True


def replace_damaged(ws: Workspace, blob_id: str, finished_file: Path) -> Path:
    """Put a freshly written, verified file in place of a stored copy found damaged."""
    target = blob_path(ws, blob_id)
    _prepare(target, finished_file)
    os.replace(finished_file, target)
    return target


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


def expected_sha256(blob_id: str) -> str:
    """The sha256 a blob's bytes must have: the hex part of its id."""
    return check_blob_id(blob_id).split(".", 1)[0]


def _describe(path: Path, what: str | None) -> str:
    return f"{path} ({what})" if what else str(path)


def _missing(path: Path, what: str | None) -> NotFoundError:
    return NotFoundError(
        f"The file {_describe(path, what)} is missing from the blob store.",
        "Run 'workbench doctor' to check the workspace.",
    )


def integrity_error(path: Path, what: str | None) -> BlobIntegrityError:
    """The error for a file whose bytes do not match its hash (one wording everywhere)."""
    return BlobIntegrityError(
        f"The file {_describe(path, what)} does not match the hash it was stored under: it was changed "
        "or damaged after it was written, so it is not read.",
        "Run 'workbench doctor' to list damaged files, then restore the file or log/register it again.",
    )


def read_verified(ws: Workspace, blob_id: str, expected: str | None = None, what: str | None = None) -> bytes:
    """A blob's bytes, after checking that their sha256 is `expected` (default: from the id).

    The returned bytes are the ones hashed, so a file swapped during the read cannot slip through.
    """
    path = blob_path(ws, blob_id)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise _missing(path, what) from None
    if hashlib.sha256(data).hexdigest() != (expected or expected_sha256(blob_id)):
        raise integrity_error(path, what)
    return data


def verified_path(
    ws: Workspace,
    blob_id: str,
    expected: str | None = None,
    what: str | None = None,
    digest: Digest = sha256_file,
) -> Path:
    """The path of a blob whose file was checked: `digest(path) == expected` (default: the
    sha256 of the bytes against the id). For readers that open the file themselves (DuckDB)."""
    path = blob_path(ws, blob_id)
    verify_file(path, expected or expected_sha256(blob_id), what, digest)
    return path


def _identity(path: Path) -> tuple[object, ...]:
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise IsADirectoryError(path)
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def verify_file(path: Path, expected: str, what: str | None = None, digest: Digest = sha256_file) -> None:
    """Raise unless `digest(path) == expected`; successes are remembered per file identity."""
    try:
        before = _identity(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise _missing(path, what) from None
    key = (before, digest, expected)
    if key in _VERIFIED:
        return
    if digest(path) != expected:
        raise integrity_error(path, what)
    if _identity(path) == before:  # unchanged while hashing: the result holds for this identity
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED.add(key)


def is_intact(path: Path, expected: str, digest: Digest = sha256_file) -> bool:
    """True if the file exists and matches (for `workbench doctor`, which lists rather than raises)."""
    try:
        verify_file(path, expected, None, digest)
    except WorkbenchError:
        return False
    return True

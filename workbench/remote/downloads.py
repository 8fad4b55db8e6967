"""Files a team server hands out (model files, snapshot data, artifacts), downloaded once and kept in a
private cache by sha256: `$XDG_CACHE_HOME/workbench/<kind>/<sha256>` (folder 0700, files 0600).

A cached file is hashed again before it is used, and one that does not match is deleted and
downloaded again; a download is hashed as it streams to a temporary file and kept only when it
matches both the sha256 the caller expects (from the object's record) and the server's
`X-Workbench-Sha256` header, so a truncated, corrupted or substituted file is never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from workbench.blobs import sha256_file
from workbench.errors import BlobIntegrityError
from workbench.remote.client import Client

log = logging.getLogger("workbench.remote")

SHA256_HEADER = "x-workbench-sha256"
CHUNK = 1 << 20


def cache_dir(kind: str) -> Path:
    """`$XDG_CACHE_HOME/workbench/<kind>` (`~/.cache/...` by default), private to its owner."""
    from workbench.serving.sources import cache_root

    folder = Path(cache_root()) / kind
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def is_sha256(text: object) -> bool:
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def cached_download(client: Client, url_path: str, kind: str, sha256: str | None, label: str) -> Path:
    """The verified local copy of the file at `url_path` of the server (see the module doc).

    `sha256`: what the object's record says its file hashes to (None: trust the header alone, for
    objects whose record does not carry it). `label` names the object in errors."""
    if sha256 is not None and not is_sha256(sha256):
        raise BlobIntegrityError(f"The server named an invalid sha256 for {label}: {str(sha256)[:80]!r}.")
    folder = cache_dir(kind)
    if sha256 is not None:
        cached = folder / sha256
        if cached.is_file():
            if sha256_file(cached) == sha256:
                return cached
            log.warning("The cached file %s of %s does not match its sha256; downloading it again.", cached, label)
            cached.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-")  # mode 0600
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, client.stream(url_path) as response:
            announced = response.headers.get(SHA256_HEADER, "")
            for chunk in response.iter_bytes(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != announced or (sha256 is not None and actual != sha256):
            raise BlobIntegrityError(f"The file of {label} downloaded from {client.remote.url} does not match its "
                                     f"sha256 {sha256 or announced or '(none announced)'}; refused.",
                                     "Try again; if it persists, run 'workbench doctor' on the server.")  # fmt: skip
        target = folder / actual
        os.replace(tmp, target)
        return target
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

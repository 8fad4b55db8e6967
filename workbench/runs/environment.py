"""What a run ran on: code version, Python, packages, host — recorded to explain and reproduce."""

from __future__ import annotations

import platform
import re
import socket
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the repository containing `folder`, or (None, None) outside git (or
    before its first commit). Dirty: a tracked file differs from the commit (untracked files do
    not count). One `git status` answers both (a process start is most of what each git call costs)."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=folder, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, None
    if status.returncode != 0:
        return None, None
    commit, dirty = None, False
    for line in status.stdout.splitlines():
        if line.startswith("# branch.oid "):
            commit = line[len("# branch.oid ") :].strip()
        elif line and not line.startswith("#"):
            dirty = True
    if commit is None or commit == "(initial)":
        return None, None
    return commit, dirty


@lru_cache(maxsize=1)
def packages() -> dict[str, str]:
    """Installed distributions and versions of the running interpreter."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = name_version(dist)
        if name:
            found[name.lower()] = version
    return dict(sorted(found.items()))


#: what the email parser takes for a header's name (RFC 5322 printable characters except ':')
_HEADER_NAME = re.compile(r"[\041-\071\073-\176]+")


def name_version(dist: metadata.Distribution) -> tuple[Any, Any]:
    """`(dist.metadata.get("Name"), dist.version)`, read once and from the header lines alone.

    `dist.metadata` runs the email parser over the whole metadata file, long description included
    (most of the file), and `dist.version` does it again: for a few hundred distributions that was
    most of the time it takes to start an interactive run. The two headers are found by reading the
    header block line by line; anything the email parser might read differently (a folded Name or
    Version, a line that is not a plain header, carriage returns) is left to it.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or dist.read_text("")
    if text is not None:
        end = text.find("\n\n")
        found = _name_version_headers(text[: end + 1] if end >= 0 else text)
        if found is not None:
            return found
    meta = dist.metadata
    return meta.get("Name"), meta["Version"]


def _name_version_headers(head: str) -> tuple[str | None, str | None] | None:
    """Name and Version of a header block, or None when it is not made of plain one-line headers."""
    if "\r" in head:
        return None
    values: dict[str, str] = {}
    last = ""
    for line in head.split("\n"):
        if not line:
            break  # the end of the headers
        if line[0] in " \t":  # continues the previous header
            if last in ("name", "version"):
                return None
            continue
        name, colon, value = line.partition(":")
        if not colon or not _HEADER_NAME.fullmatch(name) or line.startswith("From "):
            return None
        last = name.lower()
        if last in ("name", "version") and last not in values:
            values[last] = value.lstrip(" \t")
    return values.get("name"), values.get("version")


def describe(folder: Path) -> dict[str, Any]:
    commit, dirty = git_state(folder)
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "python_version": platform.python_version(),
        "packages": packages(),
        "host": socket.gethostname(),
        "executable": sys.executable,
    }


def package_differences(old: dict[str, str], new: dict[str, str], limit: int = 8) -> list[str]:
    """Human-readable differences between two package sets (for rerun warnings)."""
    changes = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            changes.append(f"{name} {old.get(name, '-')} -> {new.get(name, '-')}")
    return changes[:limit] + ([f"... {len(changes) - limit} more"] if len(changes) > limit else [])

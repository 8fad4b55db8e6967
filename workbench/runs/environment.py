"""What a run ran on: code version, Python, packages, host — recorded to explain and reproduce."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the repository containing `folder`, or (None, None) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


@lru_cache(maxsize=1)
def packages() -> dict[str, str]:
    """Installed distributions and versions of the running interpreter."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            found[name.lower()] = dist.version
    return dict(sorted(found.items()))


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

"""Who may read a workspace: its owner only by default, or one named group when asked.

A workspace holds request inputs (prediction logs), training data (snapshots) and everything a
team logged, so it must not follow the umask: with the usual umask 022 every local user could
read it, and with 000 write it. The workspace root's mode is the policy and the barrier:

- private (the default): root `0700`; Workbench's own folders `0700`, its files `0600`;
- shared with a group (`workbench init --group NAME`): root `2770` owned by that group (the
  setgid bit makes new files and folders inherit the group); folders `2770`, files `0660`.

Everything below the root takes its permission bits from its parent folder (`make_dir`) and
files take their folder's bits without the execute bits (`protect`, `file_mode`), so no code
needs to know the policy: the root decides. Even a file a library wrote with the umask is
unreachable for others, because they cannot enter the root.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

from workbench.errors import WorkbenchError

PRIVATE_DIR_MODE = 0o700
GROUP_DIR_MODE = 0o2770


def _bits(mode: int) -> int:
    return stat.S_IMODE(mode) & 0o777


def file_mode(folder: Path) -> int:
    """The mode for a new file in `folder`: the folder's read/write bits, never execute."""
    return _bits(folder.stat().st_mode) & 0o666


def make_dir(path: Path) -> Path:
    """`mkdir -p` where each new folder gets its parent's permission bits (and setgid bit)."""
    if path.is_dir():
        return path
    make_dir(path.parent)
    parent_mode = stat.S_IMODE(path.parent.stat().st_mode) & 0o2777
    try:
        path.mkdir()
    except FileExistsError:
        return path
    os.chmod(path, parent_mode)  # mkdir's mode is filtered by the umask; chmod is exact
    return path


def protect(path: Path) -> Path:
    """Give a file Workbench wrote the mode its folder allows (0600 in a private workspace)."""
    wanted = file_mode(path.parent)
    if _bits(path.stat().st_mode) != wanted:
        os.chmod(path, wanted)
    return path


def open_for_append(path: Path) -> int:
    """An fd appending to `path` (never through a symlink) with its folder's file mode.

    The mode given to open() is filtered by the umask, so it is set exactly once created."""
    wanted = file_mode(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, wanted)
    try:
        info = os.fstat(fd)
        if _bits(info.st_mode) != wanted and info.st_uid == os.geteuid():
            os.fchmod(fd, wanted)
    except BaseException:
        os.close(fd)
        raise
    return fd


def secure_root(root: Path, group: str | None = None) -> None:
    """Set the workspace root's mode (and group) to the policy: private, or shared with `group`."""
    if group is None:
        os.chmod(root, PRIVATE_DIR_MODE)
        return
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise WorkbenchError(
            f"No group named {group!r} on this machine.",
            "Create it (groupadd) or choose an existing group (see 'getent group').",
        ) from exc
    os.chown(root, -1, gid)
    os.chmod(root, GROUP_DIR_MODE)


def exposure(root: Path) -> str | None:
    """Why the workspace root is reachable by other local users, or None when it is not."""
    mode = _bits(root.stat().st_mode)
    if mode & 0o007:
        return f"{root} has mode {mode:04o}: every local user can read{' and write' if mode & 0o002 else ''} it"
    return None

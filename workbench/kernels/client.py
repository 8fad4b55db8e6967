"""Finding, starting and talking to a fork server.

One server per (Python executable, preload set), shared by every runner process of the user
through a Unix socket named after that key in a private per-user folder, so `workbench run`
invocations, sweep workers and the JupyterLab server all reuse warm servers. Starting one is
race-free: concurrent starters each launch a server, the socket is replaced atomically, and the
losers exit when they see their socket replaced. They are kept few (`servers`): a server whose
preload set contains the wanted one is shared, at most `$WORKBENCH_FORKSERVER_MAX` run (least
recently used stops first), and each exits after `$WORKBENCH_FORKSERVER_IDLE` seconds unused.

Why the folder is checked, not just created: it used to be `/tmp/workbench-forkserver-<uid>`,
used as found. Another local user could create it first and (1) plant a `workbench` package that
the server, started there with `python -m`, imported as us; (2) plant a socket served by their
own process, which then received our environment (tokens included) and our kernels; (3) swap the
server's log for a symlink to one of our files. So:

- The folder is `$XDG_RUNTIME_DIR/workbench-forkserver` when that runtime dir is ours with mode
  0700 (per-user by design), else `<tempdir>/workbench-forkserver-<uid>`. Either way it is created
  with mode 0700 and then checked with `lstat` (a symlink is refused, not followed): it must be a
  directory owned by our uid with mode exactly 0700, in a parent others cannot swap it out of.
- A folder that fails the check is refused with `ForkServerUnavailable` naming owner, mode, path
  and the fix. We do not fall back to a fresh `mkdtemp()` folder: its sockets could not be found by
  the next process, so every run would start (and leak) a server. The provisioner instead warns
  and starts a normal kernel, at once and without waiting for a server: runs stay correct, only
  slower, and the warning keeps the problem visible until someone removes the folder.
- The server runs with cwd `/` and `-P` (Python >= 3.11), so no folder it does not control is on
  its `sys.path` (`-I` would also work for an editable install but drops PYTHONPATH and user site).
- Every connection checks the server's uid (SO_PEERCRED) before sending anything; a socket served
  by another uid is reported and replaced by a server of ours.
- The server log is opened with O_NOFOLLOW and mode 0600.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workbench.kernels.forkserver import IDLE_SECONDS
from workbench.kernels.protocol import peer_uid, read_message, send_message

START_TIMEOUT = 60.0
log = logging.getLogger("workbench.kernels")


class ForkServerUnavailable(RuntimeError):
    """The fork server could not be reached or started; callers fall back to a normal kernel."""


class ForkServerGone(ForkServerUnavailable):
    """No server behind the socket any more (removed, refused, or closed before replying): it exited."""


class ForkServerImpostor(ForkServerUnavailable):
    """The socket is served by a process of another user: it must never see our requests."""


def socket_dir() -> Path:
    """The verified private folder of our sockets and logs, created if missing.

    Raises ForkServerUnavailable when the folder exists but is not safe to use (see module doc).
    """
    folder = _socket_dir_location()
    _make_private_folder(folder)
    problem = _folder_problem(folder)
    if problem is not None:
        raise ForkServerUnavailable(
            f"refusing the fork-server folder {folder}: {problem}, so another user could run code as you or read "
            "your environment through it. Fast kernels stay off until you remove it (or have an administrator "
            "remove it) or set XDG_RUNTIME_DIR to a folder of yours with mode 0700"
        )
    return folder


def _socket_dir_location() -> Path:
    """$XDG_RUNTIME_DIR is private by design (per user, 0700): prefer it when it really is."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and _private_problem(runtime) is None:
        return Path(runtime) / "workbench-forkserver"
    return Path(tempfile.gettempdir()) / f"workbench-forkserver-{os.getuid()}"


def _make_private_folder(folder: Path) -> None:
    """mkdir with mode 0700: atomic, so the folder is either ours or existed before (then checked)."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        return
    except OSError as exc:
        raise ForkServerUnavailable(f"cannot create the fork-server folder {folder}: {exc}") from exc
    # a umask that removes owner bits would leave it unusable: set the mode through a descriptor, not
    # the name (if the name no longer is our folder, the check that follows refuses it)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        os.fchmod(fd, 0o700)
    except OSError:
        pass
    finally:
        os.close(fd)


def _folder_problem(folder: Path) -> str | None:
    """Why `folder` or its parent makes the folder unsafe for our sockets (None when it is safe)."""
    return _private_problem(str(folder)) or _parent_problem(str(folder.parent))


def _private_problem(path: str) -> str | None:
    """Why `path` is not a directory of ours with mode 0700 (None when it is). Never follows symlinks."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot inspect it ({exc})"
    if stat.S_ISLNK(st.st_mode):
        return "it is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != os.getuid():
        return f"it is owned by uid {st.st_uid}, not by us (uid {os.getuid()})"
    if stat.S_IMODE(st.st_mode) != 0o700:
        return f"its mode is {stat.S_IMODE(st.st_mode):04o}, not 0700"
    return None


def _parent_problem(parent: str) -> str | None:
    """Others must not be able to rename our folder away and put theirs in its place."""
    try:
        st = os.stat(parent)
    except OSError as exc:
        return f"cannot inspect its parent {parent} ({exc})"
    if st.st_uid not in (0, os.getuid()):
        return f"its parent {parent} is owned by uid {st.st_uid}"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        return f"its parent {parent} is writable by others without the sticky bit"
    return None


def socket_path(modules: list[str]) -> Path:
    key = hashlib.sha256(json.dumps([sys.executable, sorted(set(modules))]).encode()).hexdigest()[:16]
    return socket_dir() / f"{key}.sock"


def request(path: Path, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request and read the reply, after checking that the server runs as us."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            _check_peer(conn, path)
            send_message(conn, payload)
            reply = read_message(conn)
    except (FileNotFoundError, ConnectionError) as exc:
        raise ForkServerGone(f"fork server at {path} unreachable: {exc}") from exc
    except OSError as exc:
        raise ForkServerUnavailable(f"fork server at {path} unreachable: {exc}") from exc
    if reply is None:
        raise ForkServerGone(f"fork server at {path} closed the connection")
    if "error" in reply:
        raise ForkServerUnavailable(reply["error"])
    return reply


def _check_peer(conn: socket.socket, path: Path) -> None:
    """Requests carry our environment (tokens included) and get our kernels: only for our own uid."""
    uid = peer_uid(conn)
    if uid is not None and uid != os.getuid():
        raise ForkServerImpostor(f"the fork-server socket {path} is served by uid {uid}, not by us (uid {os.getuid()})")


def _server_env() -> dict[str, str]:
    """The server imports libraries with their default thread pools; kernels get limits after fork."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env.pop(var, None)
    for var in ("WORKBENCH_RUN_ID", "WORKBENCH_SNAPSHOT_PINS"):
        env.pop(var, None)
    return env


def ensure_server(modules: list[str]) -> Path:
    """The socket of a running server with (at least) `modules` preloaded, starting one if needed.

    The server for exactly `modules` is one ping away (marked as used: a spawn follows). Only
    without it are the others looked at: one preloading a superset is shared, else the least
    recently used are stopped to keep within the bound and a new one starts (see `servers`).
    """
    path = socket_path(modules)
    try:
        request(path, {"op": "ping", "touch": True}, timeout=5)
        return path
    except ForkServerImpostor as exc:
        log.warning("%s; replacing it with a fork server of ours", exc)
        return _start_and_wait(path, modules)
    except ForkServerUnavailable:
        pass
    from workbench.kernels import servers  # built on this module

    bound, idle = servers.max_servers(), servers.idle_seconds()
    running = servers.list_servers()
    shared = servers.shared_server(modules, running)
    if shared is not None:
        return shared
    stopped = servers.make_room(running, keep=bound - 1)
    if stopped:
        log.info("stopped %d least recently used fork server(s) (at most %d run)", len(stopped), bound)
    return _start_and_wait(path, modules, idle)


def _start_and_wait(path: Path, modules: list[str], idle: float | None = None) -> Path:
    """Start a server for `modules` at `path` and wait until it answers."""
    if idle is None:
        from workbench.kernels import servers

        idle = servers.idle_seconds()
    server = _start_server(path, modules, idle)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            request(path, {"op": "ping"}, timeout=5)
            return path
        except ForkServerUnavailable:
            pass
        if server.poll() is not None:  # it died before serving: waiting out the timeout helps no one
            raise ForkServerUnavailable(
                f"fork server exited with code {server.returncode} before serving (see {path.with_suffix('.log')})"
            )
        time.sleep(0.05)
    raise ForkServerUnavailable(f"fork server did not start within {START_TIMEOUT:.0f} s (see {path.stem}.log)")


def server_command(path: Path, modules: list[str], idle: float = IDLE_SECONDS) -> list[str]:
    """`-P`: no script/cwd folder on the server's sys.path (it imports what kernels will use)."""
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *safe_path, "-m", "workbench.kernels.forkserver", str(path), ",".join(modules), repr(idle)]


def _start_server(path: Path, modules: list[str], idle: float) -> subprocess.Popen[bytes]:
    """Launch a server in its own session, cwd `/` (nothing importable there), logging next to its socket."""
    log_fd = _open_log(path.with_suffix(".log"))
    try:
        return subprocess.Popen(
            server_command(path, modules, idle), stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
            start_new_session=True, env=_server_env(), cwd="/",
        )  # fmt: skip
    finally:
        os.close(log_fd)


def _open_log(log_path: Path) -> int:
    """Append to the server log; a symlink in its place is refused, never followed."""
    try:
        return os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ForkServerUnavailable(
            f"cannot open the fork-server log {log_path} (a symlink is refused): {exc}; "
            "remove it to re-enable fast kernels"
        ) from exc


def spawn(path: Path, argv: list[str], env: dict[str, str], cwd: str | None, log: str | None) -> int:
    """Fork a kernel; returns its pid."""
    reply = request(path, {"op": "spawn", "argv": argv, "env": env, "cwd": cwd, "log": log,
                           "parent_pid": os.getpid()})  # fmt: skip
    return int(reply["pid"])


def stop_server(modules: list[str]) -> None:
    """Make the server for exactly `modules` exit, if one runs (kernels it forked keep running)."""
    from workbench.kernels import servers

    try:
        path = socket_path(modules)
        info = servers.ServerInfo.from_ping(path, request(path, {"op": "ping"}, timeout=5))
    except ForkServerUnavailable:
        return
    servers.stop(info, force=True)

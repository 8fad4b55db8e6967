"""Keeping fork servers few: listing, sharing, bounding and stopping them.

Each server holds ~250 MB (its preloaded libraries), and there is one per distinct preload set:
after a session of ordinary use a user had 8-10 idle ones up for their whole idle time. So, when
`client.ensure_server` finds no server for a preload set:

- **Share**: a running server (same Python) whose preload set contains the wanted one is used
  instead (the one with the fewest extra modules). Caveat: its kernels find the extra modules
  already imported. Code behaves the same (it imports what it uses), but whatever an import does
  to global state (warning filters, logging handlers, a matplotlib backend, `sys.modules` checks
  such as "is torch loaded?") has already happened in those kernels.
- **Bound**: before starting a new server, the least recently used ones (last spawn, or a
  client's `touch` just before one) are asked to exit until fewer than `max_servers()` remain.
  The `exit` request is handled between requests, so no fork is cut short, and it carries the
  last use the caller saw, so a server chosen by another client in between stays. Kernels forked
  from a stopped server keep running: they are independent processes in their own sessions.
  Under concurrent starts the bound can be exceeded for a moment; the next start restores it.
- **Idle time and bound are settings**: `$WORKBENCH_FORKSERVER_IDLE` (seconds, default 600) and
  `$WORKBENCH_FORKSERVER_MAX` (default 2), or the workspace settings `fork_server_idle` and
  `fork_server_max`; the environment wins (as for the sweep limits). A server gets its idle time
  when it starts.

Signals are a last resort (`stop(..., force=True)`, i.e. `workbench doctor --stop-fork-servers`,
and servers of older versions that do not know `exit`): only to a pid that psutil shows is a fork
server of this socket run by our uid, through psutil's pid-reuse check.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from workbench.errors import ValidationError, WorkbenchError
from workbench.kernels.client import ForkServerUnavailable, request, socket_dir
from workbench.kernels.forkserver import IDLE_SECONDS

ENV_IDLE = "WORKBENCH_FORKSERVER_IDLE"
ENV_MAX = "WORKBENCH_FORKSERVER_MAX"
SETTING_IDLE = "fork_server_idle"
SETTING_MAX = "fork_server_max"
DEFAULT_MAX = 2
PING_TIMEOUT = 2.0
STOP_WAIT = 3.0


class ForkServerSettingError(WorkbenchError, ForkServerUnavailable):
    """A fork-server setting is invalid: runs fall back to normal kernels and say why."""


@dataclass(frozen=True)
class ServerInfo:
    """A running fork server as it reports itself (`ping`); None fields: an older server's unknowns."""

    path: Path
    pid: int
    executable: str | None
    modules: tuple[str, ...] | None
    started: float | None
    last_used: float | None
    idle_timeout: float | None
    #: resident memory in bytes when listed (pages shared with its kernels included)
    rss: int | None

    @classmethod
    def from_ping(cls, path: Path, reply: dict[str, Any]) -> ServerInfo:
        pid, modules = int(reply["pid"]), reply.get("modules")
        return cls(path, pid, reply.get("executable"), None if modules is None else tuple(modules),
                   reply.get("started"), reply.get("last_used"), reply.get("idle_timeout"), _rss(pid))  # fmt: skip

    def idle_for(self) -> float | None:
        return None if self.last_used is None else max(0.0, time.time() - self.last_used)

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "socket": str(self.path), "executable": self.executable,
                "modules": None if self.modules is None else list(self.modules), "rss": self.rss,
                "started": self.started, "last_used": self.last_used, "idle_for": self.idle_for(),
                "idle_timeout": self.idle_timeout}  # fmt: skip


def _rss(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def idle_seconds() -> float:
    """Seconds a server stays up without a spawn: `$WORKBENCH_FORKSERVER_IDLE`, setting `fork_server_idle`."""
    return _configured(ENV_IDLE, SETTING_IDLE, IDLE_SECONDS, float)


def max_servers() -> int:
    """Servers a user keeps running at most: `$WORKBENCH_FORKSERVER_MAX`, setting `fork_server_max`."""
    return int(_configured(ENV_MAX, SETTING_MAX, DEFAULT_MAX, int))


def _configured(env: str, setting: str, default: float, kind: type) -> Any:
    """`workspace.positive_setting` for the current workspace, if any; an invalid value is a
    ForkServerSettingError, so runs fall back to normal kernels and say why."""
    from workbench.workspace import positive_setting

    try:
        return positive_setting(_current_workspace(), setting, env, default, kind)
    except ValidationError as exc:
        raise ForkServerSettingError(exc.message, exc.hint) from exc


def _current_workspace() -> Any:
    """Servers are per user, not per workspace: without a (readable) workspace the defaults apply."""
    from workbench.workspace import current_workspace

    try:
        workspace = current_workspace()
        workspace.config()  # a broken settings file: defaults, as without a workspace
    except (WorkbenchError, OSError):
        return None
    return workspace


def list_servers() -> list[ServerInfo]:
    """The fork servers of ours that answer in our socket folder (none if the folder does not exist yet).

    Raises ForkServerUnavailable when the folder is unsafe (see `client`). A socket served by another
    uid or by no one is left out; a server still starting has no socket yet and is not listed.
    """
    from workbench.kernels.client import _socket_dir_location

    if not os.path.lexists(_socket_dir_location()):
        return []
    found = []
    for path in sorted(socket_dir().glob("*.sock")):
        try:
            found.append(ServerInfo.from_ping(path, request(path, {"op": "ping"}, timeout=PING_TIMEOUT)))
        except (ForkServerUnavailable, KeyError, TypeError, ValueError):
            continue
    return found


def shared_server(modules: list[str], servers: list[ServerInfo]) -> Path | None:
    """The socket of a running server (same Python) that preloads all of `modules`, marked as used."""
    wanted = set(modules)
    fits = [s for s in servers if s.executable == sys.executable and s.modules is not None and wanted <= set(s.modules)]
    for server in sorted(fits, key=lambda s: (len(s.modules or ()), -(s.last_used or 0.0))):
        try:
            request(server.path, {"op": "ping", "touch": True}, timeout=PING_TIMEOUT)
        except ForkServerUnavailable:
            continue
        return server.path
    return None


def make_room(servers: list[ServerInfo], keep: int) -> list[ServerInfo]:
    """Ask the least recently used servers to exit until at most `keep` remain; returns those stopped.

    Graceful only: a server that was used since `servers` was listed, or that does not know `exit`
    (an older version), stays, and may leave the bound exceeded until it idles out.
    """
    stopped: list[ServerInfo] = []
    for server in sorted(servers, key=lambda s: s.last_used or 0.0):
        if len(servers) - len(stopped) <= keep:
            break
        if _ask_to_exit(server, if_unused=True):
            stopped.append(server)
    return stopped


def stop(server: ServerInfo, *, force: bool = False, wait: float = STOP_WAIT) -> bool:
    """Stop one server; True once it is stopping (gone, or a zombie for its starter to reap, if `wait`).

    First the `exit` request (handled between forks). With `force`, a server that does not answer
    it gets SIGTERM (graceful in current servers), then SIGKILL after `wait`, each only after
    checking that the pid still is our fork server for this socket.
    """
    process = _verified_process(server)
    if _ask_to_exit(server, if_unused=False):
        if process is not None:
            _wait_exited(process, wait)
        return True
    if not force or process is None:
        return False
    return _terminate(process, wait)


def stop_all(*, force: bool = True) -> list[ServerInfo]:
    """Stop every fork server of ours; returns those stopped. Their running kernels are not touched."""
    return [server for server in list_servers() if stop(server, force=force)]


def _ask_to_exit(server: ServerInfo, *, if_unused: bool) -> bool:
    payload: dict[str, Any] = {"op": "exit"}
    if if_unused and server.last_used is not None:
        payload["if_last_used"] = server.last_used
    try:
        return bool(request(server.path, payload, timeout=PING_TIMEOUT).get("stopping"))
    except ForkServerUnavailable:
        return False


def _verified_process(server: ServerInfo) -> psutil.Process | None:
    """The server's process, only if it is run by our uid as a fork server of `server.path`."""
    try:
        process = psutil.Process(server.pid)
        if process.uids().real != os.getuid():
            return None
        cmdline = process.cmdline()
    except psutil.Error:
        return None
    if "workbench.kernels.forkserver" not in cmdline or str(server.path) not in cmdline:
        return None
    return process


def _terminate(process: psutil.Process, wait: float) -> bool:
    """SIGTERM, then SIGKILL after `wait`; psutil refuses to signal a pid that was reused meanwhile."""
    try:
        process.send_signal(signal.SIGTERM)
        if not _wait_exited(process, wait):
            process.kill()
            _wait_exited(process, wait)
    except psutil.NoSuchProcess:
        pass
    except psutil.Error:
        return False
    return True


def _wait_exited(process: psutil.Process, wait: float) -> bool:
    """Whether it exited within `wait` s. A zombie counts: it holds no memory, and reaping it is its
    starter's business (psutil's own `wait` would block on a zombie that is not our child)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)

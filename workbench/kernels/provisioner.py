"""`workbench-forkserver`: a jupyter_client kernel provisioner that forks kernels from a warm server.

Registered under the `jupyter_client.kernel_provisioners` entry point group. It behaves like the
local provisioner (same connection files, signals, shutdown) except that the kernel process is
forked from a fork server with the notebook's imports already loaded instead of started with
Popen. If the fork server cannot be started or reached, or its socket folder is refused as unsafe
(see `client`), it logs a warning naming the problem and launches a normal kernel. A spawn that
fails because its server stopped in between (bounded pool, idle exit) is retried once first.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import List, Unicode

from workbench.kernels.client import ForkServerGone, ForkServerUnavailable, ensure_server, request, spawn

NAME = "workbench-forkserver"
log = logging.getLogger("workbench.kernels")

#: No ipykernel parent poll in a forked kernel. Its default comes from JPY_PARENT_PID as the fork
#: server saw it when it preloaded ipykernel: set whenever the runner is itself inside a kernel
#: (`wb.sweep` in a notebook, the demo, JupyterLab). ipykernel then exits once its parent becomes
#: init, and a forked kernel's parent is the fork server, which exits when another server takes its
#: socket (two workers starting one at once on first use) or makes room for others: kernels died
#: mid-run ("Parent appears to have exited") and their runs failed with DeadKernelError. The fork
#: server ends a forked kernel when its runner goes away, which is what that poll is for.
NO_PARENT_POLL = "--IPKernelApp.parent_handle=0"

#: pids of kernels this process forked through a fork server: not our children, so cancelling a
#: run (which kills our children) must also kill these.
FORKED_KERNELS: set[int] = set()


class ForkedKernel:
    """The Popen-like view of a forked kernel that LocalProvisioner's methods expect.

    Its exit code comes from the fork server, its real parent (which reaps it): signals as negative
    numbers, as with Popen. It is 0 when no longer knowable: the server stopped before the kernel
    ended (the kernel was then reparented), or the server is of an older version.
    """

    stdin = stdout = stderr = None
    #: how long a dead kernel may stay unreaped by a live server before its code counts as unknown
    REAP_GRACE_S = 2.0

    def __init__(self, pid: int, server: Path | None = None) -> None:
        self.pid = pid
        self.server = server
        self._process = psutil.Process(pid)
        self._dead_since: float | None = None
        self.returncode: int | None = None
        FORKED_KERNELS.add(pid)

    def poll(self) -> int | None:
        if self.returncode is None and not self._alive():
            code = self._reported_exit_code()
            if code is not None:
                self.returncode = code
                FORKED_KERNELS.discard(self.pid)
        return self.returncode

    def _alive(self) -> bool:
        try:
            return self._process.is_running() and self._process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _reported_exit_code(self) -> int | None:
        """The server's record of how the kernel ended; None while it has yet to reap it (a zombie)."""
        if self.server is None:
            return 0
        self._dead_since = self._dead_since or time.monotonic()
        try:
            reply = request(self.server, {"op": "status", "pid": self.pid}, timeout=2)
        except ForkServerUnavailable:
            return 0
        if reply.get("exit_code") is not None:
            return int(reply["exit_code"])
        if reply.get("running") and time.monotonic() - self._dead_since < self.REAP_GRACE_S:
            return None
        return 0

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"kernel {self.pid} still running")
            time.sleep(0.05)
        return self.returncode or 0

    def send_signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkServerProvisioner(LocalProvisioner):  # type: ignore[misc]
    preload = List(Unicode(), default_value=[], config=True, help="Modules the fork server imports.")

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        try:
            argv = [*cmd[cmd.index("-f") :], NO_PARENT_POLL]
            stream = kwargs.get("stdout")
            log_name = getattr(stream, "name", None) if stream is not None else None
            env, cwd = dict(kwargs.get("env") or os.environ), kwargs.get("cwd") or os.getcwd()
            path, pid = _fork(list(self.preload), argv, env, cwd, log_name)
        except (ForkServerUnavailable, ValueError) as exc:
            log.warning("fast kernel unavailable (%s); starting a normal kernel", exc)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedKernel(pid, path)
        self.pid = pid
        self.pgid = pid  # the child calls setsid(): its process group is its pid
        self.cwd = kwargs.get("cwd", os.getcwd())
        return self.connection_info


def _fork(preload: list[str], argv: list[str], env: dict[str, str], cwd: str, log_name: str | None) -> tuple[Path, int]:
    """Fork a kernel from a server; once more if that server exited between `ensure_server` and the spawn."""
    for attempt in (1, 2):
        path = ensure_server(preload)
        try:
            return path, spawn(path, argv, env, cwd, log_name)
        except ForkServerGone as exc:
            if attempt == 2:
                raise
            log.info("fork server at %s stopped before the spawn (%s); trying again", path, exc)
    raise AssertionError("unreachable")

"""`workbench-forkserver`: a jupyter_client kernel provisioner that forks kernels from a warm server.

Registered under the `jupyter_client.kernel_provisioners` entry point group. It behaves like the
local provisioner (same connection files, signals, shutdown) except that the kernel process is
forked from a fork server with the notebook's imports already loaded instead of started with
Popen. If the fork server cannot be started or reached, or its socket folder is refused as unsafe
(see `client`), it logs a warning naming the problem and launches a normal kernel.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import psutil
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import List, Unicode

from workbench.kernels.client import ForkServerUnavailable, ensure_server, spawn

NAME = "workbench-forkserver"
log = logging.getLogger("workbench.kernels")

#: pids of kernels this process forked through a fork server: not our children, so cancelling a
#: run (which kills our children) must also kill these.
FORKED_KERNELS: set[int] = set()


class ForkedKernel:
    """The Popen-like view of a forked kernel that LocalProvisioner's methods expect."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._process = psutil.Process(pid)
        self.returncode: int | None = None
        FORKED_KERNELS.add(pid)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                alive = self._process.is_running() and self._process.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                alive = False
            if not alive:
                self.returncode = 0
                FORKED_KERNELS.discard(self.pid)
        return self.returncode

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
            argv = cmd[cmd.index("-f") :]
            path = ensure_server(list(self.preload))
            stream = kwargs.get("stdout")
            pid = spawn(path, argv, dict(kwargs.get("env") or os.environ), kwargs.get("cwd") or os.getcwd(),
                        getattr(stream, "name", None) if stream is not None else None)  # fmt: skip
        except (ForkServerUnavailable, ValueError) as exc:
            log.warning("fast kernel unavailable (%s); starting a normal kernel", exc)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedKernel(pid)
        self.pid = pid
        self.pgid = pid  # the child calls setsid(): its process group is its pid
        self.cwd = kwargs.get("cwd", os.getcwd())
        return self.connection_info

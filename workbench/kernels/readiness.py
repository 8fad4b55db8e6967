"""Knowing when a fresh kernel is ready without jupyter_client's fixed 0.2 s pause.

`KernelClient.wait_for_ready` ends by draining IOPub until it has been silent for 0.2 s: every
run pays that pause, a quarter of a tracked run of a small notebook on a fork-server kernel
(measured: ~0.2 s of ~0.8 s). The messages it drains are the kernel's busy/idle status for its
own `kernel_info` request, so this client stops at the `idle` status of a kernel_info sent once
IOPub is known to be connected (a round trip of a few milliseconds), and keeps the 0.2 s silence
only as the fallback for a kernel that never sends it.

It asks again every second until a reply comes and skips replies to its own earlier requests: a
kernel slower than 1 s to answer (a busy machine, a slow IPython startup file) answers the queued
requests in order, and accepting only the latest request's reply read one stale reply per poll, so
the backlog never shrank and the run failed with "Kernel didn't respond in 60 seconds" although
the kernel was up. A kernel that does not become ready is a `KernelStartError` (one line for the
user; the runner retries once on a plain kernel).
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient

from workbench.errors import WorkbenchError
from workbench.kernels.private_api import ClientContextOverride, adopt_kernel_info

SILENCE_S = 0.2  # jupyter_client's own drain timeout, kept as the fallback
RECONNECT_MS = 10
KERNEL_START_TIMEOUT = 120.0
ENV_START_TIMEOUT = "WORKBENCH_KERNEL_START_TIMEOUT"


class KernelStartError(WorkbenchError, RuntimeError):
    """A kernel did not become ready: one line for the user. Also a RuntimeError, like the jupyter_client
    error it replaces, so code that caught that (nbclient shuts the kernel down) keeps working."""


def kernel_start_timeout() -> float:
    """How long a started kernel may take to answer: `$WORKBENCH_KERNEL_START_TIMEOUT` (seconds), else 120 s.

    Read with the shared `workspace.positive_setting`, so a value that is not a positive number
    ("abc", "-1", "0") is a ValidationError naming the variable, not silently the default: a typo
    would otherwise only show when a slow kernel failed after 120 s. There is no workspace setting
    for it (no workspace is passed).
    """
    from workbench.workspace import positive_setting

    return float(positive_setting(None, "kernel_start_timeout", ENV_START_TIMEOUT, KERNEL_START_TIMEOUT, float))


class ReadyKernelClient(ClientContextOverride, AsyncKernelClient):
    """An AsyncKernelClient whose `wait_for_ready` returns as soon as the kernel is idle."""

    def new_context(self) -> zmq.asyncio.Context:
        """Its own context (as jupyter_client's), whose sockets retry a refused connection after
        10 ms instead of ZeroMQ's 100 ms: the client connects before a new kernel has bound its
        ports, and the first retry was most of the wait for a fork-server kernel (measured)."""
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        return context

    async def wait_for_ready(self, timeout: float | None = None) -> None:  # type: ignore[override]
        deadline = time.time() + (float("inf") if timeout is None else timeout)
        while True:  # same handshake as jupyter_client: kernel_info reply, then IOPub connected
            request_id = self.kernel_info()
            reply = await self._reply_to(request_id)
            if reply is not None:
                try:
                    first = await self.iopub_channel.get_msg(timeout=SILENCE_S)
                except Empty:
                    pass  # IOPub not connected yet: ask again
                else:
                    adopt_kernel_info(self, reply)
                    if not _is_idle_for(first, request_id):
                        await self._sync_iopub()
                    return
            if not await self.is_alive():
                raise KernelStartError("The kernel exited while starting.",
                                       "Its own output is in the run's kernel.log.")  # fmt: skip
            if time.time() > deadline:
                raise KernelStartError(
                    f"The kernel did not answer within {timeout or 0:.0f} s of starting (is the machine overloaded?).",
                    f"Set {ENV_START_TIMEOUT}=SECONDS to wait longer; the kernel's own output is in the run's "
                    "kernel.log.",
                )

    async def _reply_to(self, request_id: str) -> dict[str, Any] | None:
        """The reply to `request_id` within 1 s, skipping replies to earlier requests (see module doc)."""
        deadline = time.monotonic() + 1.0
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await self.shell_channel.get_msg(timeout=left)
            except Empty:
                return None
            if msg["msg_type"] == "kernel_info_reply" and msg["parent_header"].get("msg_id") == request_id:
                return msg
        return None

    async def _sync_iopub(self) -> None:
        """Drain IOPub up to the `idle` of one more kernel_info, sent now that IOPub is connected.

        The first request's busy/idle may have been published before the subscription took
        effect (then they never arrive), so waiting for them could only end in the timeout.
        """
        request_id = self.kernel_info()
        await self._reply_to(request_id)
        while True:
            try:
                msg = await self.iopub_channel.get_msg(timeout=SILENCE_S)
            except Empty:
                return
            if _is_idle_for(msg, request_id):
                return


def _is_idle_for(msg: dict[str, Any], request_id: str) -> bool:
    return (
        msg.get("msg_type") == "status"
        and msg.get("content", {}).get("execution_state") == "idle"
        and msg.get("parent_header", {}).get("msg_id") == request_id
    )

"""Every use of another library's private API, in one module.

Workbench reaches into jupyter_client, ipykernel and CPython where their public API has no hook
for what a run needs (a per-run environment and log file, a fork-server kernel spec, a fast start
and a quiet, quick shutdown). Private names can change in any release without notice, so they are
named here and nowhere else: when one of these libraries is upgraded, this module is the one to
read, and `tests/test_private_api.py` (one test per override) fails if a name disappears, changes
its signature or is no longer called where we rely on it.

Other modules use what is defined here: the mixins `KernelManagerOverrides` (kernel managers of
runs, `kernels.manager`) and `ClientContextOverride` (`kernels.readiness.ReadyKernelClient`), and
the functions `replace_kernel_spec`, `adopt_kernel_info`, `stop_control_thread` and
`run_exit_functions`. Each override's docstring says why it is needed and which version it was
checked against (`CHECKED_AGAINST`).

Not here, because not private: `ForkServerProvisioner` sets `LocalProvisioner`'s public attributes
`process`, `pid`, `pgid` and `cwd` (jupyter_client documents that class as the one to subclass).

Import cost: standard library only at import time. The fork server imports this module before it
forks, and must not start threads or create zmq contexts then (see `kernels.forkserver`).
"""

from __future__ import annotations

import atexit
import contextlib
from typing import Any

#: The versions every override below was read and tested against.
CHECKED_AGAINST = {"jupyter_client": "8.10.0", "ipykernel": "7.4.0", "traitlets": "5.16.1", "python": "3.11"}

#: How often a stopping kernel is polled (jupyter_client: 100 ms), see `KernelManagerOverrides._async_wait`.
EXIT_POLL_S = 0.01


class KernelManagerOverrides:
    """Mixin for an `AsyncKernelManager` subclass (listed before it in the bases): its private start and
    stop steps, with two hooks of ours that subclasses implement instead of naming private methods.

    `launch_options(kw)` gets the launch's keyword arguments (Popen-style: env, stdout, stderr...)
    before the kernel spec is turned into a provisioner, and returns them; `kernel_launched()` runs
    once the kernel process exists. Overriding the public `start_kernel` would not do: a restart
    calls `_async_start_kernel` directly, and the provisioner is created from `kernel_spec` inside
    the pre-start step, not before it.
    """

    shutting_down: bool  # jupyter_client's flag, set by `shutdown_kernel` before it interrupts

    def launch_options(self, kw: dict[str, Any]) -> dict[str, Any]:
        """The launch's keyword arguments, changed as the subclass needs (default: unchanged)."""
        return kw

    def kernel_launched(self) -> None:
        """Called once the kernel process is launched, before jupyter_client's post-start steps."""

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        """Override of `KernelManager._async_pre_start_kernel(*, transport_encryption=None, **kw)`.

        Why: the step of every start (`_async_start_kernel` calls it by name) that runs before the
        provisioner is created from `kernel_spec` and whose keyword arguments reach the launch, so
        `launch_options` can both replace the spec (fork-server provisioner) and add env/stdout/stderr
        without editing os.environ (runs execute in threads of one process). Checked: jupyter_client 8.10.0.
        """
        return await super()._async_pre_start_kernel(**self.launch_options(kw))  # type: ignore[misc]

    async def _async_post_start_kernel(self, **kw: Any) -> None:
        """Override of `KernelManager._async_post_start_kernel(**kw)`.

        Why: the first step after the launch (`_async_start_kernel` calls it by name), where the
        kernel process has its own copy of the log file and ours can be closed (`kernel_launched`).
        Checked: jupyter_client 8.10.0.
        """
        self.kernel_launched()
        await super()._async_post_start_kernel(**kw)  # type: ignore[misc]

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        """Override of `KernelManager._async_wait(pollinterval=0.1)`: polls at most every `EXIT_POLL_S`.

        Why: a forked kernel exits a few milliseconds after its shutdown reply, and jupyter_client's
        shutdown (`_async_finish_shutdown`, `_async_kill_kernel`) waits for that exit in 100 ms steps,
        which every run paid. Checked: jupyter_client 8.10.0.
        """
        await super()._async_wait(pollinterval=min(pollinterval, EXIT_POLL_S))  # type: ignore[misc]

    async def _async_interrupt_kernel(self) -> None:
        """Override of `KernelManager._async_interrupt_kernel()`: no SIGINT on the way to a shutdown.

        Why: `_async_shutdown_kernel` interrupts the kernel before every shutdown request. The kernel
        is idle by then (the notebook ended, or failed), and ipykernel handles the shutdown request on
        its control thread anyway; a SIGINT that lands while it still finishes a message only makes it
        log "KeyboardInterrupt caught in kernel." at the end of the run. A kernel still busy is stopped
        all the same: jupyter_client terminates it after its wait. Outside a shutdown (`shutting_down`
        false) it passes through, so a user's interrupt is unaffected. Checked: jupyter_client 8.10.0.
        """
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()  # type: ignore[misc]


def replace_kernel_spec(manager: Any, spec: Any) -> None:
    """Make `manager.kernel_spec` (a read-only property caching `KernelManager._kernel_spec`) return `spec`.

    Why: a run's fork-server provisioner is named in its kernel spec's metadata, and the property
    has no setter; the alternative, a KernelSpecManager per run, would re-read every spec from disk.
    Call before the provisioner is created (`launch_options`). Checked: jupyter_client 8.10.0.
    """
    manager._kernel_spec = spec


class ClientContextOverride:
    """Mixin for an `AsyncKernelClient` subclass (listed before it): the client's own zmq context comes
    from `new_context()`, a hook of ours that the subclass implements."""

    def new_context(self) -> Any:
        """A new `zmq.asyncio.Context` for this client's sockets."""
        raise NotImplementedError

    def _context_default(self) -> Any:
        """Override of `KernelClient._context_default()`, traitlets' default of the `context` trait
        (found by its name, as `AsyncKernelClient` defines it, not through `@default`).

        Why: a client created by `KernelManager.client()` gets no context argument, and this is the
        one place to configure the context it creates (e.g. a shorter reconnect interval). Setting
        the private `_created_context` keeps jupyter_client destroying it when the client stops.
        Checked: jupyter_client 8.10.0, traitlets 5.16.1.
        """
        self._created_context = True
        return self.new_context()


def adopt_kernel_info(client: Any, reply: dict[str, Any]) -> None:
    """Let `client` adapt to the kernel's protocol version, as jupyter_client's `wait_for_ready` does.

    Why: `ReadyKernelClient.wait_for_ready` replaces jupyter_client's, which calls the private
    `KernelClient._handle_kernel_info_reply(msg)` on the first kernel_info reply; skipping it would
    talk a newer protocol to an older kernel. Checked: jupyter_client 8.10.0.
    """
    client._handle_kernel_info_reply(reply)


def stop_control_thread(app: Any, timeout: float = 2.0) -> None:
    """Stop and join ipykernel's control thread (`IPKernelApp.control_thread`, a `ControlThread`).

    Why: `IPKernelApp.close()`, at a kernel's exit, stops the IOPub thread first and then joins the
    control thread. The control thread may still be finishing the shutdown request, whose last step
    flushes stdout *through* the IOPub thread and waits for it: with IOPub gone that wait only ends
    when the kernel manager loses patience and sends SIGTERM, about 3 s later (measured: 1 run in 8
    of a sweep). Stopping and joining it while IOPub still runs lets that flush complete. The
    attribute is an undocumented trait of the app. Checked: ipykernel 7.4.0.
    """
    control = getattr(app, "control_thread", None)
    if control is not None and control.is_alive():
        with contextlib.suppress(Exception):
            control.stop()
            control.join(timeout=timeout)


def run_exit_functions() -> None:
    """Run the `atexit` functions registered so far (CPython's private `atexit._run_exitfuncs()`).

    Why: a kernel forked by the fork server must end with `os._exit` (a normal exit would unwind
    into the server's loop it was forked from), which skips atexit; this runs what the kernel
    registered there (e.g. workbench.tracking's final flush). The standard library has no public
    way to do it. Checked: CPython 3.11.
    """
    atexit._run_exitfuncs()

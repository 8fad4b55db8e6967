"""The private APIs Workbench relies on (`workbench/kernels/private_api.py`) are still there, as we use them.

One test per override: it fails when an upgrade of jupyter_client, ipykernel, traitlets or Python
removes the private name, changes the parameters we rely on, or stops calling it where our
override needs it to be called. A failure names the version the override was checked against:
read that override's docstring, adapt it, then update `CHECKED_AGAINST`.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.client import KernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager, KernelManager

from workbench.kernels import private_api
from workbench.kernels.manager import kernel_manager_with_env

REPO = Path(__file__).resolve().parent.parent


def checked(library: str) -> str:
    """For failure messages: the version the override was checked against, and the installed one."""
    installed = sys.version.split()[0] if library == "python" else metadata.version(library)
    return f"(checked against {library} {private_api.CHECKED_AGAINST[library]}, installed {installed})"


def private(owner: Any, name: str, library: str = "jupyter_client") -> Callable[..., Any]:
    """`owner.name`, which must exist and be callable."""
    attribute = getattr(owner, name, None)
    label = getattr(owner, "__qualname__", owner.__name__)
    assert callable(attribute), f"{label}.{name} is gone {checked(library)}"
    return attribute


def parameters(function: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(function).parameters)


def takes_any_keyword(function: Callable[..., Any]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters(function).values())


def source(function: Callable[..., Any]) -> str:
    return inspect.getsource(inspect.unwrap(function))


def test_pre_start_kernel_still_gets_the_launch_arguments_before_the_provisioner_exists():
    pre_start = private(KernelManager, "_async_pre_start_kernel")
    assert inspect.iscoroutinefunction(pre_start)
    assert takes_any_keyword(pre_start), f"it no longer takes the launch's **kw {checked('jupyter_client')}"
    start = source(KernelManager._async_start_kernel)
    assert "self._async_pre_start_kernel(**kw)" in start, f"start no longer calls it {checked('jupyter_client')}"
    assert "create_provisioner_instance" in source(pre_start) and "self.kernel_spec" in source(pre_start), (
        f"the provisioner is no longer created from kernel_spec in it {checked('jupyter_client')}"
    )


def test_post_start_kernel_still_runs_after_the_launch():
    post_start = private(KernelManager, "_async_post_start_kernel")
    assert inspect.iscoroutinefunction(post_start)
    assert takes_any_keyword(post_start), f"it no longer takes **kw {checked('jupyter_client')}"
    start = source(KernelManager._async_start_kernel)
    launch, post = start.find("self._async_launch_kernel("), start.find("self._async_post_start_kernel(")
    assert 0 <= launch < post, f"start no longer calls it after the launch {checked('jupyter_client')}"


def test_wait_still_takes_a_poll_interval_and_is_what_shutdown_waits_with():
    wait = private(KernelManager, "_async_wait")
    assert inspect.iscoroutinefunction(wait)
    assert "pollinterval" in parameters(wait), f"it no longer takes pollinterval {checked('jupyter_client')}"
    for caller in (KernelManager._async_finish_shutdown, KernelManager._async_kill_kernel):
        called = "self._async_wait(" in source(caller)
        assert called, f"{caller.__name__} no longer calls it {checked('jupyter_client')}"


def test_interrupt_kernel_is_skipped_only_during_a_shutdown():
    interrupt = private(KernelManager, "_async_interrupt_kernel")
    assert inspect.iscoroutinefunction(interrupt)
    assert list(parameters(interrupt)) == ["self"], f"its parameters changed {checked('jupyter_client')}"
    shutdown = source(KernelManager._async_shutdown_kernel)
    flag, call = shutdown.find("self.shutting_down = True"), shutdown.find("self._async_interrupt_kernel()")
    assert 0 <= flag < call, f"shutdown no longer sets shutting_down before it interrupts {checked('jupyter_client')}"

    manager = kernel_manager_with_env({})(kernel_name="python3")  # no kernel started
    manager.shutting_down = True
    asyncio.run(manager._async_interrupt_kernel())  # skipped: nothing to interrupt, no error
    manager.shutting_down = False
    with pytest.raises(RuntimeError, match="No kernel is running"):  # passed through to jupyter_client
        asyncio.run(manager._async_interrupt_kernel())


def test_kernel_spec_is_still_the_cache_behind_the_kernel_spec_property():
    assert "_kernel_spec" in vars(KernelManager), f"KernelManager._kernel_spec is gone {checked('jupyter_client')}"
    assert isinstance(vars(KernelManager)["kernel_spec"], property)
    manager = KernelManager(kernel_name="python3")
    spec = KernelSpec(argv=["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], display_name="probe",
                      language="python")  # fmt: skip
    private_api.replace_kernel_spec(manager, spec)
    assert manager.kernel_spec is spec, f"kernel_spec no longer reads _kernel_spec {checked('jupyter_client')}"


def test_context_default_still_makes_the_context_a_client_destroys():
    from workbench.kernels.readiness import RECONNECT_MS, ReadyKernelClient

    private(AsyncKernelClient, "_context_default")
    assert "_created_context" in KernelClient.class_trait_names(), f"_created_context is gone {checked('traitlets')}"
    client = ReadyKernelClient()
    context = client.context
    assert context.getsockopt(zmq.RECONNECT_IVL) == RECONNECT_MS, (
        f"traitlets no longer takes the context's default from _context_default {checked('traitlets')}"
    )
    assert client._created_context
    client.stop_channels()
    assert context.closed, f"a client no longer destroys the context it created {checked('jupyter_client')}"


def test_handle_kernel_info_reply_still_adapts_the_protocol_version():
    handle = private(KernelClient, "_handle_kernel_info_reply")
    assert list(parameters(handle)) == ["self", "msg"], f"its parameters changed {checked('jupyter_client')}"
    assert "self._handle_kernel_info_reply(" in source(KernelClient._async_wait_for_ready), (
        f"jupyter_client's own wait_for_ready no longer calls it: compare ReadyKernelClient {checked('jupyter_client')}"
    )
    client = AsyncKernelClient()
    try:
        private_api.adopt_kernel_info(client, {"content": {"protocol_version": "4.1"}})
        assert client.session.adapt_version == 4
    finally:
        client.stop_channels()  # destroys the context it made, not left to __del__ at interpreter exit


def test_ipykernel_control_thread_can_still_be_stopped_before_exit():
    from ipykernel.control import ControlThread
    from ipykernel.kernelapp import IPKernelApp

    has_it = "control_thread" in IPKernelApp.class_trait_names()
    assert has_it, f"IPKernelApp.control_thread is gone {checked('ipykernel')}"
    stop = private(ControlThread, "stop", "ipykernel")
    assert list(parameters(stop)) == ["self"], f"ControlThread.stop's parameters changed {checked('ipykernel')}"
    assert "timeout" in parameters(ControlThread.join)

    thread = ControlThread(daemon=True)
    thread.start()
    private_api.stop_control_thread(SimpleNamespace(control_thread=thread))
    assert not thread.is_alive()


def test_atexit_run_exitfuncs_still_runs_the_registered_functions():
    import atexit

    private(atexit, "_run_exitfuncs", "python")  # a builtin: no signature to inspect, so run it
    code = ("import atexit, os\nfrom workbench.kernels.private_api import run_exit_functions\n"
            "atexit.register(print, 'flushed', flush=True)\nrun_exit_functions()\nos._exit(0)\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "flushed\n", f"{done.stdout!r} {done.stderr} {checked('python')}"


def test_the_run_kernel_manager_gets_the_overrides():
    """The mixin's overrides are not shadowed by a base class listed before it (the client's context
    default is checked by its effect, in the `_context_default` test)."""
    manager_class = kernel_manager_with_env({})
    assert issubclass(manager_class, AsyncKernelManager)
    for name in ("_async_pre_start_kernel", "_async_post_start_kernel", "_async_wait", "_async_interrupt_kernel"):
        assert getattr(manager_class, name) is getattr(private_api.KernelManagerOverrides, name), name


PRIVATE_NAMES = re.compile(
    r"\b(_async_pre_start_kernel|_async_post_start_kernel|_async_wait|_async_interrupt_kernel|_kernel_spec"
    r"|_context_default|_created_context|_handle_kernel_info_reply|_run_exitfuncs)\b|\.control_thread\b"
)


def test_no_other_module_names_a_private_api():
    """So that an upgrade is checked in `private_api` alone."""
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / "workbench").rglob("*.py"))
        if path.name != "private_api.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_NAMES.search(line)
    ]
    assert not found, "\n".join(found)

"""The kernel manager class a run's papermill execution starts its kernel with.

One class per execution (made by `kernel_manager_with_env`), because papermill takes a class, not
an instance: it carries the run's environment, its kernel.log and, for a fast kernel, the modules
its fork server preloads. The private jupyter_client steps it hooks into are in `private_api`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from workbench.autologging.kernel import kernel_arguments
from workbench.kernels.private_api import KernelManagerOverrides, replace_kernel_spec


def kernel_manager_with_env(
    extra_env: dict[str, str], log_path: Path | None = None, preload: list[str] | None = None, base: type | None = None
) -> type:
    """A kernel manager class whose kernels get `extra_env` (thread-safe: no os.environ edits).

    The kernel process's own stdout/stderr (not the notebook's outputs) go to `log_path`, so
    kernel chatter lands in the run folder instead of the user's terminal. Its clients are
    `ReadyKernelClient`s (no fixed pause at start-up) that tolerate a slow first reply. With
    `preload` (a list, even empty) the kernel is forked from a fork server that imported them.
    """
    from traitlets import DottedObjectName, Type

    _quiet_papermill_log()
    if base is None:
        from jupyter_client.manager import AsyncKernelManager as base  # noqa: N813

    class EnvKernelManager(KernelManagerOverrides, base):  # type: ignore[misc, valid-type]
        client_class = DottedObjectName("workbench.kernels.readiness.ReadyKernelClient")
        client_factory = Type(klass="workbench.kernels.readiness.ReadyKernelClient")

        def launch_options(self, kw: dict[str, Any]) -> dict[str, Any]:
            if preload is not None and self.provisioner is None:
                replace_kernel_spec(self, _with_fork_server(self.kernel_spec, preload))
            env = dict(kw.pop("env", None) or os.environ)
            env.update(extra_env)
            kw["env"] = env
            extra_arguments = kernel_arguments(extra_env, self.kernel_spec)  # autologging's extension
            if extra_arguments:
                kw["extra_arguments"] = [*(kw.get("extra_arguments") or []), *extra_arguments]
            if log_path is not None:
                self._workbench_log = open(log_path, "ab")  # noqa: SIM115  (closed once the kernel has it)
                kw.setdefault("stdout", self._workbench_log)
                kw.setdefault("stderr", self._workbench_log)
            return kw

        def kernel_launched(self) -> None:
            log = getattr(self, "_workbench_log", None)
            if log is not None:
                log.close()

    return EnvKernelManager


@functools.cache
def _quiet_papermill_log() -> None:
    """Keep papermill's (and nbclient's) log records off the terminal when nobody configured logging.

    Python prints unhandled WARNING+ records to stderr: a kernel that did not start showed up as
    "Error occurred while starting new kernel client ..." once per attempt, beside the run's own
    one-line error. Whatever they say is recorded with the run; a configured handler still gets them.
    """
    import logging

    logging.getLogger("papermill").addHandler(logging.NullHandler())


def _with_fork_server(spec: Any, preload: list[str]) -> Any:
    """A copy of the kernel spec that asks for the fork-server provisioner."""
    from jupyter_client.kernelspec import KernelSpec

    from workbench.kernels.provisioner import NAME

    data = spec.to_dict()
    data["metadata"] = {**(data.get("metadata") or {}),
                        "kernel_provisioner": {"provisioner_name": NAME, "config": {"preload": preload}}}  # fmt: skip
    copy = KernelSpec(**data)
    copy.resource_dir = spec.resource_dir
    return copy

"""Autologging on from the start of a tracked run's kernel: an IPython extension.

A run that autologs (the default) starts its kernel with `KERNEL_ARGUMENT`, IPython's own way to
load an extension at start-up (`extra_extensions`: it adds to, never replaces, the extensions a
user's configuration loads). The extension turns autologging on before the first cell, without
touching the notebook's namespace, its cells or its execution count, and without importing
scikit-learn (see `patches`). Only an ipykernel kernel of Python gets the argument: another kernel
would not understand it.
"""

from __future__ import annotations

import os
from typing import Any

from workbench.autologging import ENV_AUTOLOG

KERNEL_ARGUMENT = "--IPKernelApp.extra_extensions=workbench.autologging.kernel"


def kernel_arguments(env: dict[str, str], kernel_spec: Any) -> list[str]:
    """Extra command-line arguments for a run's kernel: the extension, if the run autologs and the
    kernel is an ipykernel (`env`: the run's kernel environment)."""
    argv = list(getattr(kernel_spec, "argv", None) or [])
    if env.get(ENV_AUTOLOG) != "1" or not any("ipykernel" in str(part) for part in argv):
        return []
    return [KERNEL_ARGUMENT]


def load_ipython_extension(ipython: Any) -> None:
    """IPython calls this at kernel start: autologging on (the kernel's environment says the run wants it)."""
    if os.environ.get(ENV_AUTOLOG) == "1":
        from workbench.autologging import autolog

        autolog()

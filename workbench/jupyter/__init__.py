"""The jupyter_server extension: Workbench's REST API under `/workbench/api/` for the JupyterLab UI.

The handlers are a thin shell over the library (see `workbench.jupyter.handlers`), so the
sidebar, the CLI and notebooks always agree. The extension is enabled by the
`jupyter-config/server-config/workbench.json` file installed with the wheel, and can be enabled
by hand with `jupyter server extension enable workbench.jupyter`.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Tell jupyter_server which module holds `_load_jupyter_server_extension`."""
    return [{"module": "workbench.jupyter"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the REST handlers; imported lazily so `import workbench` stays fast."""
    from workbench.jupyter.handlers import setup_handlers

    setup_handlers(serverapp)


# The name older jupyter_server / notebook versions look for.
load_jupyter_server_extension = _load_jupyter_server_extension

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension", "load_jupyter_server_extension"]

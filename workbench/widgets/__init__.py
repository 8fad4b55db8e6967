"""Notebook widgets (ipywidgets 8): launch runs and sweeps from a form, browse and compare runs.

    from workbench.widgets import RunLauncher, RunTable
    RunLauncher("train.ipynb")                 # form from the parameters cell, Run / Sweep buttons
    RunTable(experiment="wine", filter="metrics.rmse < 0.3")

Imported lazily by name so `import workbench.widgets` does not pull in ipywidgets until used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.widgets.launcher import RunLauncher
    from workbench.widgets.table import RunTable

_EXPORTS = {"RunLauncher": "workbench.widgets.launcher", "RunTable": "workbench.widgets.table"}
__all__ = ["RunLauncher", "RunTable"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench.widgets' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

"""Notebook widgets (ipywidgets 8): launch runs and sweeps from a form, browse and compare runs.

    from workbench.widgets import RunLauncher, RunTable
    RunLauncher("train.ipynb")   # one form from the parameters cell: a value and optional sweep values per row
    RunTable(experiment="wine", filter="metrics.rmse < 0.3")   # a checkbox per row; tick runs, then Compare

Modules: `launcher` (RunLauncher), `form` (its aligned grid of fields), `table` (RunTable) and
`theme` (the HTML they draw, coloured only with JupyterLab theme variables).

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

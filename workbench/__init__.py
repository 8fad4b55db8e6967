"""Workbench: a notebook-centric MLOps workbench.

    import workbench as wb
    wb.init()
    wb.snapshot("wine", df)                 # register a data snapshot
    wb.sql("select * from snapshot('wine@1')")
    run = wb.run("train.ipynb", params={"lr": 0.1})   # a tracked papermill run
    wb.log_metric("rmse", 0.3, step=1)      # inside a notebook

The public API is re-exported here lazily (so `import workbench` stays fast); each name lives
in exactly one module, listed in `_EXPORTS`.

Four documented names are also subpackages: `wb.runs`, `wb.models`, `wb.snapshots` and
`wb.compare`. They stay the modules Python makes them (`import workbench.models` then
`workbench.models.registry` works as anywhere else), and calling one is an alias of the function
with the unambiguous name (`_ALIASES`): `wb.runs(...)` is `wb.search_runs(...)`, `wb.models()`
is `wb.list_models()`, `wb.snapshots()` is `wb.list_snapshots()`, `wb.compare(...)` is
`wb.compare_runs(...)`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

#: public name -> "module:attribute"
_EXPORTS: dict[str, str] = {
    # workspace
    "init": "workbench.api:init",
    "use": "workbench.api:use",
    "Workspace": "workbench.workspace:Workspace",
    # errors
    "WorkbenchError": "workbench.errors:WorkbenchError",
    "ValidationError": "workbench.errors:ValidationError",
    "NotFoundError": "workbench.errors:NotFoundError",
    # snapshots
    "snapshot": "workbench.api:snapshot",
    "list_snapshots": "workbench.api:list_snapshots",
    "get_snapshot": "workbench.snapshots.store:get",
    "load_snapshot": "workbench.api:load_snapshot",
    "diff_snapshots": "workbench.snapshots.differ:diff",
    "export_snapshot": "workbench.snapshots.store:export",
    "sql": "workbench.snapshots.query:sql",
    # runs
    "run": "workbench.runs.launch:run",
    "rerun": "workbench.runs.launch:rerun",
    "cancel_run": "workbench.runs.launch:cancel_run",
    "sweep": "workbench.sweeps:sweep",
    "get_run": "workbench.runs.store:get_run",
    "search_runs": "workbench.runs.query:runs",
    "metric_history": "workbench.runs.store:metric_history",
    "load_artifact": "workbench.runs.store:load_artifact",
    "artifact_path": "workbench.runs.store:artifact_path",
    "notebook_parameters": "workbench.runs.params:notebook_parameters",
    # comparing runs
    "compare_runs": "workbench.compare:compare",
    "metric_vs_param": "workbench.compare:metric_vs_param",
    "parallel_coordinates": "workbench.compare:parallel_coordinates",
    "step_curves": "workbench.compare:step_curves",
    "metric_bars": "workbench.compare:metric_bars",
    "param_importance": "workbench.compare:param_importance",
    "widgets": "workbench.widgets",
    # a team server
    "connect": "workbench.remote.api:connect",
    "sync_state": "workbench.remote.api:sync_state",
    # logging inside a notebook
    "log_metric": "workbench.tracking:log_metric",
    "log_metrics": "workbench.tracking:log_metrics",
    "log_param": "workbench.tracking:log_param",
    "log_params": "workbench.tracking:log_params",
    "set_tag": "workbench.tracking:set_tag",
    "log_artifact": "workbench.tracking:log_artifact",
    "log_text": "workbench.tracking:log_text",
    "log_figure": "workbench.tracking:log_figure",
    "log_model": "workbench.tracking:log_model",
    "active_run_id": "workbench.tracking:active_run_id",
    "set_experiment": "workbench.tracking:set_experiment",
    "end_run": "workbench.tracking:end_run",
    "autolog": "workbench.autologging:autolog",
    # model registry and serving
    "promote": "workbench.models.registry:promote",
    "rollback": "workbench.models.registry:rollback",
    "set_alias": "workbench.models.registry:set_alias",
    "set_gates": "workbench.models.registry:set_gates",
    "list_models": "workbench.models.registry:list_models",
    "get_model": "workbench.models.registry:get_model",
    "get_model_version": "workbench.models.registry:get_version",
    "load_model": "workbench.models.registry:load",
    "model_card": "workbench.models.card:model_card",
    "GateRefused": "workbench.models.gates:GateRefused",
    "serve": "workbench.serving.server:serve_in_background",
    "drift_report": "workbench.serving.monitor:drift_report",
    "live_quality": "workbench.quality.live:live_quality",
    "log_outcomes": "workbench.api:log_outcomes",
    "predict": "workbench.models.batch:predict",
    # governance and automation
    "explain": "workbench.governance.explain:explain",
    "fairness": "workbench.governance.fairness:fairness",
    "run_pipeline": "workbench.governance.pipelines:run_pipeline",
    "validate_pipelines": "workbench.governance.pipelines:validate_file",
    "watch": "workbench.governance.triggers:watch",
    "Guard": "workbench.governance.autorollback:Guard",
    "GuardPolicy": "workbench.governance.autorollback:GuardPolicy",
    # audit
    "audit_log": "workbench.audit:entries",
    # importing history from other tools
    "import_mlflow": "workbench.importers.mlflow:import_mlflow",
}

#: subpackage that is also a documented function alias -> the public name calling it runs
_ALIASES: dict[str, str] = {
    "runs": "search_runs",
    "models": "list_models",
    "snapshots": "list_snapshots",
    "compare": "compare_runs",
}

__all__ = sorted([*_EXPORTS, *_ALIASES])


def __getattr__(name: str) -> Any:
    if name in _ALIASES:
        package = importlib.import_module(f"{__name__}.{name}")
        setattr(sys.modules[__name__], name, package)  # makes it callable (the import usually has)
        return package
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_ALIASES))


class _CallablePackage(types.ModuleType):
    """A subpackage whose name is also a documented function: calling it calls that function.

    It stays the module in every other respect (attributes, submodules, `sys.modules`), so code
    that imports `workbench.runs.query` and users who call `wb.runs(...)` both get what they expect.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        function = getattr(sys.modules[__name__], _ALIASES[self.__name__.rpartition(".")[2]])
        return function(*args, **kwargs)


class _Workbench(types.ModuleType):
    """Makes the aliased subpackages callable as Python binds them to this package.

    Whoever imports one first (internal code, `import workbench.models`, or `wb.models` through
    `__getattr__`), the import system then sets the attribute here; this is the one moment every
    path goes through, so the module is made callable before anyone can see it. Nothing is hidden
    or replaced: the attribute is the module itself.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _ALIASES and type(value) is types.ModuleType and value.__name__ == f"{__name__}.{name}":
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Workbench

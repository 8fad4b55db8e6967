"""Workbench: a notebook-centric MLOps workbench.

    import workbench as wb
    wb.init()
    wb.snapshot("wine", df)                 # register a data snapshot
    wb.sql("select * from snapshot('wine@1')")
    run = wb.run("train.ipynb", params={"lr": 0.1})   # a tracked papermill run
    wb.log_metric("rmse", 0.3, step=1)      # inside a notebook

The public API is re-exported here lazily (so `import workbench` stays fast); each name lives
in exactly one module, listed in `_EXPORTS`.
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
    "snapshots": "workbench.api:snapshots",
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
    "runs": "workbench.runs.query:runs",
    "metric_history": "workbench.runs.store:metric_history",
    "load_artifact": "workbench.runs.store:load_artifact",
    "artifact_path": "workbench.runs.store:artifact_path",
    "notebook_parameters": "workbench.runs.params:notebook_parameters",
    # comparing runs
    "compare": "workbench.compare:compare",
    "metric_vs_param": "workbench.compare:metric_vs_param",
    "parallel_coordinates": "workbench.compare:parallel_coordinates",
    "step_curves": "workbench.compare:step_curves",
    "metric_bars": "workbench.compare:metric_bars",
    "param_importance": "workbench.compare:param_importance",
    "widgets": "workbench.widgets",
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
    # model registry and serving
    "promote": "workbench.models.registry:promote",
    "rollback": "workbench.models.registry:rollback",
    "set_alias": "workbench.models.registry:set_alias",
    "set_gates": "workbench.models.registry:set_gates",
    "models": "workbench.models.registry:list_models",
    "get_model": "workbench.models.registry:get_model",
    "get_model_version": "workbench.models.registry:get_version",
    "load_model": "workbench.models.registry:load",
    "model_card": "workbench.models.card:model_card",
    "GateRefused": "workbench.models.gates:GateRefused",
    "serve": "workbench.serving.server:serve_in_background",
    "drift_report": "workbench.serving.monitor:drift_report",
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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _PublicModule(types.ModuleType):
    """Keeps public functions reachable when a submodule has the same name.

    Importing `workbench.snapshots` (a package) makes Python set `workbench.snapshots` to the
    module, which would hide the public function `wb.snapshots()`. Internal code imports
    submodules with `from workbench.x import y`, which goes through `sys.modules`, so
    dropping that attribute assignment loses nothing.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        target = _EXPORTS.get(name)
        if isinstance(value, types.ModuleType) and target and ":" in target:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicModule

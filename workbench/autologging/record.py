"""What autologging writes into the active run, through the same calls a notebook makes itself.

Everything goes through `workbench.tracking` (`log_param`, `log_metric`, `log_text`, `log_model`),
so it lands where the notebook's own logging lands: the run executing the notebook, or in an
interactive kernel the run its first log call starts. Two rules of its own:

* A metric autologging records again (a second `accuracy_score(...)`, a second fit's
  `training_score`) continues a step series (0, 1, 2, ...) instead of replacing the first value.
* A parameter the run was started with (a notebook parameter, given or default) is never
  overwritten by an estimator parameter of the same name: a sweep's axis stays what it swept.
"""

from __future__ import annotations

import json
from typing import Any

from workbench import tracking
from workbench.autologging.values import estimator_params, loggable, metric_value
from workbench.runs.events import EVENTS_FILE, run_dir

_steps: dict[str, int] = {}
_steps_run: str | None = None
_declared: dict[str, frozenset[str]] = {}


def _next_steps(run_id: str, name: str, count: int = 1) -> int:
    """The first of `count` new steps of autologged metric `name` in run `run_id` (series restart per run)."""
    global _steps_run
    if _steps_run != run_id:
        _steps.clear()
        _steps_run = run_id
    first = _steps.get(name, 0)
    _steps[name] = first + count
    return first


def _declared_params(run: Any) -> frozenset[str]:
    """The parameters run `run` was started with: the `param` events right after its start event."""
    if run.interactive:
        return frozenset()
    names = _declared.get(run.run_id)
    if names is None:
        found: set[str] = set()
        try:
            with open(run_dir(run.record.ws, run.run_id) / EVENTS_FILE, encoding="utf-8") as events:
                for line in events:
                    event = json.loads(line)
                    if event.get("t") == "param":
                        found.add(str(event.get("key")))
                    elif event.get("t") not in ("start", "tag"):
                        break
        except (OSError, ValueError):
            pass  # unknown: nothing is protected rather than nothing logged
        names = _declared[run.run_id] = frozenset(found)
    return names


def metric_name(function: str, caller: Any, data: Any) -> str:
    """`<function>_<variable>`: the metric's name and the name the calling code gave the data it was
    computed on (`accuracy_score_y_test`, `LogisticRegression_score_X_val`), as MLflow names them.

    Why the suffix: an autologged series must never land in a series the notebook logs itself
    (a notebook logging its own `log_loss` while calling `log_loss` in a loop), and scores on
    training and test data are different metrics. Data passed as an expression, not a variable,
    is `unnamed`.
    """
    if data is not None:
        for variable, value in caller.f_locals.items():
            if value is data and not variable.startswith("_"):
                return f"{function}_{variable}"
    return f"{function}_unnamed"


def log_metric(name: str, result: Any) -> None:
    """Record one number as the next step of autologged series `name` (not a number: nothing)."""
    value = metric_value(result)
    if value is None:
        return
    run = tracking.active_run()
    tracking.log_metric(name, value, step=_next_steps(run.run_id, name))


def log_params(estimator: Any) -> None:
    """Record the estimator's parameters (flattened), except those the run was started with."""
    declared = _declared_params(tracking.active_run())
    for name, value in estimator_params(estimator).items():
        if name not in declared:
            tracking.log_param(name, value)


def log_training_score(estimator: Any, X: Any, y: Any, sample_weight: Any = None) -> None:
    """`estimator.score` on the data it was fitted on, as `training_score`."""
    weights = {} if sample_weight is None else {"sample_weight": sample_weight}
    log_metric("training_score", estimator.score(X, y, **weights))


def log_search(search: Any) -> None:
    """A fitted search (GridSearchCV, RandomizedSearchCV, ...): best parameters and score, one series
    point per candidate (`cv_mean_test_<scorer>`, step = candidate index, continued by later searches
    of the run), and the candidates' table as `cv_results.csv` (the run's second search:
    `cv_results-2.csv`, ...)."""
    run = tracking.active_run()
    for name, value in (getattr(search, "best_params_", None) or {}).items():
        tracking.log_param(f"best_{name}", loggable(value))
    best = getattr(search, "best_score_", None)
    if best is not None:
        log_metric("best_cv_score", best)
    results = search.cv_results_
    first = None
    for key in sorted(results):
        if not key.startswith("mean_test_"):
            continue
        values = [metric_value(v) for v in results[key]]
        start = _next_steps(run.run_id, f"cv_{key}", len(values))
        first = start if first is None else first
        for index, value in enumerate(values):
            tracking.log_metric(f"cv_{key}", float("nan") if value is None else value, step=start + index)
    searches = _next_steps(run.run_id, "cv_results.csv")  # a counter: the run's first search, second, ...
    name = "cv_results.csv" if searches == 0 else f"cv_results-{searches + 1}.csv"
    tracking.log_text(_results_table(results, first or 0), name)


def _results_table(results: dict[str, Any], first_step: int) -> str:
    """The candidates as CSV: their step in the series, parameters, test scores and ranks."""
    import pandas as pd

    keep = [k for k in results if k.startswith(("param_", "mean_test_", "std_test_", "rank_test_"))]
    frame = pd.DataFrame({key: [loggable(v) for v in results[key]] for key in keep})
    frame.insert(0, "step", range(first_step, first_step + len(frame)))
    return frame.to_csv(index=False)


def log_model(estimator: Any, X: Any) -> None:
    """The fitted model (a search: its best estimator) under its class name, with the input schema of
    the first rows of `X` (a DataFrame or a 2-D array; other inputs: no schema)."""
    model = getattr(estimator, "best_estimator_", None) if hasattr(estimator, "cv_results_") else None
    model = estimator if model is None else model
    tracking.log_model(model, type(model).__name__, sample=_sample(X))


def _sample(X: Any) -> Any:
    if hasattr(X, "iloc") and getattr(X, "ndim", 0) == 2:
        return X.head(5)
    if type(X).__module__ == "numpy" and getattr(X, "ndim", 0) == 2:
        return X[:5]
    return None

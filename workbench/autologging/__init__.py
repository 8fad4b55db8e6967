"""Autologging: scikit-learn's fits, scores and metric calls recorded without logging calls.

`wb.autolog()` turns it on in this process (an interactive notebook, a script); inside a tracked
run it is on from the kernel's start (`kernel`), unless the run was started with `autolog=False`
/ `--no-autolog`. `wb.autolog(False)` turns it off and restores scikit-learn exactly.

What is recorded (`record`), for top-level calls only (`patches`): a fit's estimator parameters
(flattened: `clf__C`), its `training_score`, for a search its best parameters (`best_clf__C`),
`best_cv_score` and one `cv_mean_test_score` point per candidate; the results of
`sklearn.metrics` calls and `estimator.score(...)` as step series; with `log_models=True` the
fitted model with its input schema.
"""

from __future__ import annotations

#: "1" in a tracked run's kernel environment: autologging is on from the kernel's start
ENV_AUTOLOG = "WORKBENCH_AUTOLOG"


def autolog(enable: bool = True, *, log_models: bool = False, log_metric_calls: bool = True) -> None:
    """Turn scikit-learn autologging on (or off, with `enable=False`) in this process.

    `log_models`: also log each top-level fit's model (skops, input schema from the first rows of
    X), under the estimator's class name (a search: its best estimator). `log_metric_calls`: log
    the results of `sklearn.metrics` functions and `estimator.score(...)` called by the notebook.
    Calling it again changes the options. Nothing is imported: scikit-learn is patched when (and if)
    the notebook imports it.
    """
    from workbench.autologging import patches
    from workbench.autologging.state import settings

    if not enable:
        patches.unpatch()
        return
    settings.log_models = bool(log_models)
    settings.log_metric_calls = bool(log_metric_calls)
    patches.patch()


def autolog_enabled() -> bool:
    """Whether autologging is on in this process."""
    from workbench.autologging import patches

    return patches.patched()

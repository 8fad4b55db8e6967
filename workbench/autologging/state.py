"""Autologging's options and its one error rule, without imports: the kernel extension turns
autologging on through this module and `patches` alone, so a run that never fits a model never
pays for importing the logging side (`record`, `workbench.tracking`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any


class AutologWarning(UserWarning):
    """Autologging could not record something; the user's code ran unchanged."""


@dataclass
class Settings:
    #: log the fitted model (skops, with its input schema) after every top-level fit
    log_models: bool = False
    #: log the results of `sklearn.metrics` calls and `estimator.score(...)` made by the notebook
    log_metric_calls: bool = True


settings = Settings()
_warned: set[str] = set()


def guarded(what: str, function: Any, *args: Any) -> None:
    """Run one logging step; a failure becomes a warning (once per kind of step), never the user's error."""
    try:
        function(*args)
    except Exception as exc:  # autologging must never break the code it observes
        if what not in _warned:
            _warned.add(what)
            warnings.warn(f"Autologging could not record {what}: {type(exc).__name__}: {exc}", AutologWarning,
                          stacklevel=4)  # fmt: skip

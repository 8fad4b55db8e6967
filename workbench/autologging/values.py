"""Estimator parameters as a run can record them: flat names, scalar or short text values.

`get_params(deep=True)` already flattens nested estimators the scikit-learn way (`clf__C` for the
`C` of a pipeline's `clf` step, `estimator__max_depth` inside a search), which is also how those
parameters are named in a `param_grid`: a run's parameters then read like the code that set them.
Values that are not plain scalars (estimators, functions, lists of steps, arrays, dicts) become a
short one-line text, so the runs table and compare views can show and filter them.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from workbench.tracking import KEY_PATTERN

#: longest text kept for a parameter value; longer ones end with "..."
MAX_TEXT = 250


def estimator_params(estimator: Any) -> dict[str, Any]:
    """Every parameter of `estimator` (nested ones as `step__name`) that a run can record, by name."""
    params = estimator.get_params(deep=True)
    return {name: loggable(value) for name, value in params.items() if KEY_PATTERN.match(str(name))}


def loggable(value: Any) -> Any:
    """`value` as a JSON scalar (None, bool, int, finite float, str), or else a short text naming it."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    return _shorten(describe(value))


def describe(value: Any) -> str:
    """One line for a non-scalar value: an estimator or function by its name (its own parameters are
    logged separately, flattened), containers element by element."""
    if hasattr(value, "get_params") or isinstance(value, type):
        return value.__name__ if isinstance(value, type) else type(value).__name__
    if callable(value) and hasattr(value, "__name__"):
        return str(value.__name__)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_element(item) for item in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key!r}: {_element(item)}" for key, item in value.items()) + "}"
    return " ".join(repr(value).split())


def _element(value: Any) -> str:
    return repr(value) if isinstance(value, str) else describe(value) if not _scalar(value) else repr(loggable(value))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, numbers.Number))


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def metric_value(result: Any) -> float | None:
    """A metric call's result as a float, or None when it is not one number (e.g. `average=None`)."""
    if isinstance(result, bool):
        return None
    if isinstance(result, numbers.Real):
        return float(result)
    if getattr(result, "shape", None) == () and hasattr(result, "item"):  # a 0-d array
        item = result.item()
        return float(item) if isinstance(item, numbers.Real) and not isinstance(item, bool) else None
    return None

"""Calling the estimator with a request's validated columns.

scikit-learn re-validates a DataFrame on every call: it compares the column names with the ones
seen in `fit`, converts the frame through narwhals and pandas, then works on a numpy array. For a
single-row request that costs about 450 µs of a ~700 µs `predict` (measured on a scaler +
logistic regression pipeline), and the server has already done it: `inputs.conform` checked the
names, order and types against the model's schema. (Finiteness checks are left to scikit-learn:
they also guard values produced inside the model, and cost microseconds.)

So for models where it provably makes no difference, the server passes one float/int numpy array
in schema order instead of a DataFrame. "Provably" is decided once, when a version is loaded:

- every schema column is numeric (a DataFrame of mixed numeric columns becomes the same float64
  array that `np.column_stack` makes; bools and strings do not),
- the estimator saw exactly these columns in this order at fit time (`feature_names_in_`),
- every estimator in the tree is scikit-learn's own and none of them looks at column names or
  passes frames on (`ColumnTransformer`, `FunctionTransformer`, `set_output(transform="pandas")`),
- and a probe row gives identical predictions both ways.

Anything else (third-party estimators, text columns, a name-aware step) gets a DataFrame, as in
training.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np

from workbench.serving.inputs import Conformed, conform

#: scikit-learn warns when an array reaches an estimator fitted on a DataFrame; for the array path
#: the names were already checked against the schema, so the warning would only be noise.
_NAMES_WARNING = "X does not have valid feature names"
#: Estimators whose behaviour depends on column names or on getting a DataFrame.
_NAME_AWARE = ("ColumnTransformer", "FunctionTransformer")


def _estimators(estimator: Any) -> list[Any]:
    """The estimator and every estimator nested in it: `get_params(deep=True)` lists pipeline
    steps, column transformers' parts and ensembles' members under their own keys."""
    get_params = getattr(estimator, "get_params", None)
    nested = get_params(deep=True).values() if callable(get_params) else []
    return [estimator, *(value for value in nested if hasattr(value, "get_params"))]


def _plain_sklearn(estimator: Any) -> bool:
    module = type(estimator).__module__
    if not (module == "sklearn" or module.startswith("sklearn.")):
        return False
    if type(estimator).__name__ in _NAME_AWARE:
        return False
    output = getattr(estimator, "_sklearn_output_config", {}) or {}
    return output.get("transform", "default") == "default"


def _numeric(schema: list[dict[str, str]]) -> bool:
    return all(c["dtype"].startswith(("int", "uint", "float")) for c in schema)


def _probe(schema: list[dict[str, str]]) -> Conformed:
    return conform({c["name"]: [1] for c in schema}, schema)


def accepts_array(estimator: Any, schema: list[dict[str, str]] | None) -> bool:
    """True when predicting from a numpy array is indistinguishable from predicting from a DataFrame."""
    if not schema or not _numeric(schema):
        return False
    names = getattr(estimator, "feature_names_in_", None)
    if names is None or [str(n) for n in names] != [c["name"] for c in schema]:
        return False
    if not all(_plain_sklearn(e) for e in _estimators(estimator)):
        return False
    probe = _probe(schema)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from_frame = np.asarray(estimator.predict(probe.frame()))
            from_array = np.asarray(estimator.predict(probe.array()))
    except Exception:  # the probe itself is not a valid input for this model: stay on the safe path
        return False
    return from_frame.shape == from_array.shape and bool(np.array_equal(from_frame, from_array))


def class_labels(estimator: Any) -> list[str] | None:
    """The classes, as the string keys of a logged `proba`, of a classifier that can say how sure it
    is; None for regressors and for classifiers without `predict_proba` (an SVC without
    `probability=True`, a pipeline ending in one: scikit-learn hides the method, `hasattr` is False)."""
    classes = getattr(estimator, "classes_", None)
    if classes is None or not hasattr(estimator, "predict_proba"):
        return None
    return [str(c.item() if hasattr(c, "item") else c) for c in classes]


class Predictor:
    """An estimator plus the input form it gets (decided once per loaded version)."""

    def __init__(self, estimator: Any, schema: list[dict[str, str]] | None) -> None:
        self.estimator = estimator
        self.takes_array = accepts_array(estimator, schema)
        self.classes = class_labels(estimator)
        if self.takes_array:
            warnings.filterwarnings("ignore", message=_NAMES_WARNING, category=UserWarning)

    def predict(self, inputs: Conformed) -> list[Any]:
        """Plain JSON-able predictions, one per row.

        scikit-learn's own finiteness checks stay on: `conform` checked the request, but a step
        inside the model can still produce NaN or inf (a log of a negative value), and only the
        next step's check turns that into an error instead of a silently wrong prediction.
        """
        predictions = self.estimator.predict(self.form(inputs))
        return [v.item() if hasattr(v, "item") else v for v in predictions]

    def probabilities(self, inputs: Conformed) -> list[dict[str, float]] | None:
        """`{class: probability}` per row, for the prediction log (live log loss needs them); None
        when the model has no probabilities or computing them failed: the answer does not depend on
        them, so they never fail a request. A call costs about as much as `predict` (measured on one
        row: 250 µs for a scaler + logistic regression, 2 ms for a 50-tree forest), which is why the
        prediction log computes them off the response path, for many requests at once."""
        if self.classes is None:
            return None
        try:
            table = self.estimator.predict_proba(self.form(inputs))
            return [dict(zip(self.classes, row.tolist(), strict=True)) for row in table]
        except Exception:  # e.g. a calibration step that fails where predict does not
            return None

    def form(self, inputs: Conformed) -> Any:
        """What the estimator is called with: one array, or a DataFrame (batch scoring calls it too)."""
        return inputs.array() if self.takes_array else inputs.frame()


def concatenate(parts: list[Conformed]) -> Conformed:
    """One Conformed holding the rows of `parts` in order (all with the same columns)."""
    if len(parts) == 1:
        return parts[0]
    names = parts[0].names
    columns: dict[str, Any] = {}
    for name in names:
        values = [part.columns[name] for part in parts]
        if all(isinstance(v, np.ndarray) for v in values):
            columns[name] = np.concatenate(values)
        else:
            columns[name] = list(itertools.chain.from_iterable(values))
    return Conformed(columns, names)

"""The arithmetic of live quality: time spans, labels and task metrics over joined rows.

Pure functions over plain pandas objects, so the live-quality table, the A/B statistics and the
lab agree on what "accuracy of these rows" or "a 1h window" means. The metric maths is
scikit-learn's; what is ours is which rows go in and how values logged as JSON are compared.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ValidationError

CLASSIFICATION = "classification"
REGRESSION = "regression"
#: The task metrics of each task, in table order.
TASK_METRICS = {CLASSIFICATION: ("accuracy", "f1", "log_loss"), REGRESSION: ("mae", "rmse")}

_SPAN = re.compile(r"^\s*(\d+)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "s", "m": "min", "min": "min", "h": "h", "d": "D", "w": "W"}


def parse_span(text: str, what: str = "--window") -> pd.Timedelta:
    """A span such as "15m", "1h", "1d" or "2w" (s, m/min, h, d, w) as a Timedelta."""
    match = _SPAN.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise ValidationError(f"Invalid {what} {text!r}.",
                              "Give a positive whole number and a unit: 15m, 1h, 6h, 1d or 1w.")  # fmt: skip
    number, unit = int(match.group(1)), _UNITS[match.group(2).lower()]
    return pd.Timedelta(number * 7, "D") if unit == "W" else pd.Timedelta(number, unit)


def parse_since(since: str | None, now: pd.Timestamp | None = None) -> pd.Timestamp | None:
    """Where a look-back starts, as a UTC time: "7d" (a span back from now, see `parse_span`) or an
    ISO time (naive times are UTC); None for everything."""
    from workbench.audit import parse_since as parse_time

    if since is None or since == "":
        return None
    if isinstance(since, str) and _SPAN.match(since):
        return (now or pd.Timestamp.now(tz="UTC")) - parse_span(since, "--since")
    try:
        return pd.Timestamp(parse_time(since, "--since")).tz_convert("UTC")
    except ValidationError:
        raise ValidationError(f"Invalid --since {since!r}.", "Give a span back from now (30m, 12h, 7d) or an ISO "
                              "time such as 2026-01-31 or 2026-01-31T12:00:00+00:00.") from None  # fmt: skip


def label(value: Any) -> str | None:
    """A class label as text, so that a label logged as 1, 1.0 or "1" is the same class (JSON and
    CSV outcomes rarely keep the type the model predicted)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = str(value)
    return text.lower() if text.lower() in ("true", "false") else text


def labels(values: pd.Series) -> pd.Series:
    return values.map(label).astype(object)


def is_classification(meta: dict[str, Any] | None, predictions: pd.Series) -> bool:
    """A classifier when the model recorded its classes (scikit-learn's `classes_`, kept in the
    version's meta at logging time), else when what it predicted is not numbers."""
    if meta and meta.get("classes") is not None:
        return True
    values = predictions.dropna()
    if values.empty or pd.api.types.is_bool_dtype(values):
        return not values.empty
    if pd.api.types.is_numeric_dtype(values):
        return False
    return not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                   for v in values)  # fmt: skip


def classification_metrics(outcomes: pd.Series, predictions: pd.Series, proba: pd.Series | None) -> dict[str, float]:
    """Accuracy and macro F1 of the predictions, and log loss over the rows that logged class
    probabilities (NaN when none did, or when an outcome is a class the model gave no probability)."""
    from sklearn.metrics import accuracy_score, f1_score

    if outcomes.empty:
        return {"accuracy": np.nan, "f1": np.nan, "log_loss": np.nan}
    y_true, y_pred = labels(outcomes), labels(predictions)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "log_loss": _log_loss(y_true, proba)}  # fmt: skip


def _log_loss(y_true: pd.Series, proba: pd.Series | None) -> float:
    """Log loss over the rows with a probability per class ({"<class>": p}); each row renormalised
    to sum to one, as logged probabilities may be rounded."""
    from sklearn.metrics import log_loss

    if proba is None:
        return np.nan
    given = proba.map(lambda p: isinstance(p, dict) and len(p) > 0)
    if not given.any():
        return np.nan
    rows = [{label(k): p for k, p in row.items()} for row in proba[given]]
    truth = y_true[given]
    classes = sorted({k for row in rows for k in row if k is not None})
    if len(classes) < 2 or not set(truth) <= set(classes):
        return np.nan
    matrix = np.array([[float(row.get(c) or 0.0) for c in classes] for row in rows])
    totals = matrix.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        return np.nan
    return float(log_loss(truth.tolist(), matrix / totals, labels=classes))


def regression_metrics(outcomes: pd.Series, predictions: pd.Series) -> dict[str, float]:
    """MAE and RMSE over the rows whose outcome and prediction are numbers (others are left out)."""
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    y_true = pd.to_numeric(outcomes, errors="coerce").astype(float)
    y_pred = pd.to_numeric(predictions, errors="coerce").astype(float)
    usable = y_true.notna() & y_pred.notna()
    if not usable.any():
        return {"mae": np.nan, "rmse": np.nan}
    return {"mae": float(mean_absolute_error(y_true[usable], y_pred[usable])),
            "rmse": float(root_mean_squared_error(y_true[usable], y_pred[usable]))}  # fmt: skip


def task_metrics(task: str, matched: pd.DataFrame) -> dict[str, float]:
    """The task's metrics over rows that have an outcome (columns outcome, prediction, proba)."""
    if task == CLASSIFICATION:
        proba = matched["proba"] if "proba" in matched.columns else None
        return classification_metrics(matched["outcome"], matched["prediction"], proba)
    return regression_metrics(matched["outcome"], matched["prediction"])


def latency_percentiles(rows: pd.DataFrame) -> dict[str, float]:
    """p50/p95/p99 of request latency in ms: one value per request (every row of a request logs
    the request's latency, so a 1,000-row request must not count 1,000 times)."""
    per_request = rows.groupby("request_id", sort=False)["latency_ms"].first().astype(float).dropna()
    if per_request.empty:
        return {"latency_p50": np.nan, "latency_p95": np.nan, "latency_p99": np.nan}
    p50, p95, p99 = np.percentile(per_request.to_numpy(), [50, 95, 99])
    return {"latency_p50": float(p50), "latency_p95": float(p95), "latency_p99": float(p99)}

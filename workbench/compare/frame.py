"""The runs to compare as one wide DataFrame, the names in it, and how runs and values read.

Every comparison function accepts the runs in whatever form the user has at hand (a `wb.runs()`
DataFrame, run ids, `Run` objects) and turns them into the layout `query.runs` produces here.
Runs are labelled by the params that differ between them (`lr=0.1, depth=3`) rather than by
their long ids, which stay in hover texts and tooltips.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any, Union

import numpy as np
import pandas as pd

from workbench.errors import NotFoundError, ValidationError
from workbench.runs.store import Run
from workbench.workspace import Workspace

RunsLike = Union[pd.DataFrame, Sequence[Union[str, Run]], str, Run]

BASE_COLUMNS = ["run_id", "experiment", "status", "created_at", "duration_s", "notebook", "sweep_id", "parent_run_id"]
MISSING_LABEL = "(none)"
#: A run's label names at most this many differing params (then "…", and a short id if needed).
LABEL_PARAMS = 4
#: A param value longer than this is cut in labels.
LABEL_VALUE_CHARS = 24
RUNS_HINT = "Pass the DataFrame from wb.runs(...) or a list of run ids / Run objects (see 'workbench runs list')."

# --------------------------------------------------------------------------------------------
# Input normalisation


def _row_of(run: Run) -> dict[str, Any]:
    """One run in the same wide layout `query.runs` produces, so both inputs share one code path."""
    row: dict[str, Any] = {
        "run_id": run.run_id, "experiment": run.experiment, "status": run.status, "created_at": run.created_at,
        "duration_s": run.duration_s, "notebook": run.notebook, "sweep_id": run.sweep_id,
        "parent_run_id": run.parent_run_id,
    }  # fmt: skip
    row.update({f"params.{k}": v for k, v in run.params.items()})
    row.update({f"metrics.{k}": v for k, v in run.metrics.items()})
    row.update({f"tags.{k}": v for k, v in run.tags.items()})
    row["inputs"] = ", ".join(run.inputs) or None
    return row


def ordered_columns(columns: Sequence[str]) -> list[str]:
    base = [c for c in BASE_COLUMNS if c in columns]
    groups = [sorted(c for c in columns if c.startswith(p)) for p in ("params.", "metrics.", "tags.")]
    rest = [c for c in columns if c not in base and not any(c in g for g in groups)]
    return base + [c for g in groups for c in g] + rest


def _rows_by_id(run_ids: list[str], ws: Workspace | None) -> dict[str, dict[str, Any]]:
    """Rows for run ids from one catalog query (opening the catalog per run is slow)."""
    from workbench.runs.query import runs_by_id

    if not run_ids:
        return {}
    found = {row["run_id"]: row for row in runs_by_id(run_ids, ws=ws).to_dict("records")}
    missing = [r for r in run_ids if r not in found]
    if missing:
        raise NotFoundError(f"No run {', '.join(missing)}.", "List runs with 'workbench runs list'.")
    return found


def _frame_of_items(items: list[Any], ws: Workspace | None) -> pd.DataFrame:
    """Wide rows for a list mixing run ids and Run objects, in the given order."""
    bad = next((item for item in items if not isinstance(item, (str, Run))), None)
    if bad is not None:
        raise ValidationError(f"Cannot compare {type(bad).__name__} {bad!r}: not a run.", RUNS_HINT)
    by_id = _rows_by_id([item for item in items if isinstance(item, str)], ws)
    rows = [_row_of(item) if isinstance(item, Run) else by_id[item] for item in items]
    frame = pd.DataFrame(rows)
    return frame[ordered_columns(list(frame.columns))] if rows else frame


def runs_frame(runs: RunsLike, ws: Workspace | None = None) -> pd.DataFrame:
    """The runs as a wide DataFrame (one row per run, unique run ids, in the given order).

    Raises ValidationError when there is nothing to compare, since every figure would be empty.
    """
    if isinstance(runs, pd.DataFrame):
        if "run_id" not in runs.columns:
            raise ValidationError("The runs DataFrame has no 'run_id' column.", RUNS_HINT)
        frame = runs.copy()
    elif isinstance(runs, (str, Run)):
        frame = _frame_of_items([runs], ws)
    elif isinstance(runs, Iterable):
        frame = _frame_of_items(list(runs), ws)
    else:
        raise ValidationError(f"Cannot compare {type(runs).__name__} {runs!r}: not runs.", RUNS_HINT)
    if frame.empty:
        raise ValidationError("No runs to compare.", RUNS_HINT + " Check the filter or experiment name.")
    frame = frame.drop_duplicates(subset="run_id").reset_index(drop=True)
    frame["run_id"] = frame["run_id"].astype(str)
    return frame


# --------------------------------------------------------------------------------------------
# Names


def known(frame: pd.DataFrame, prefix: str) -> list[str]:
    """Bare names of the params / metrics with at least one value among the runs."""
    return [c[len(prefix) :] for c in frame.columns if c.startswith(prefix) and frame[c].notna().any()]


def resolve(frame: pd.DataFrame, name: str, prefix: str, what: str) -> str:
    """The column for a metric or param name, or a ValidationError listing the known names."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"The {what} name must be a non-empty string, not {name!r}.")
    column = name if name.startswith(prefix) else prefix + name
    names = known(frame, prefix)
    if column[len(prefix) :] not in names:
        listed = ", ".join(sorted(names)) or "none"
        logger = "wb.log_metric" if what == "metric" else "the notebook's parameters cell or wb.log_param"
        raise ValidationError(
            f"Unknown {what} {name!r} for these runs (known: {listed}).",
            f"Pick one of the known names; runs get {what}s from {logger}.",
        )
    return column


def resolve_any(frame: pd.DataFrame, name: str) -> str:
    """A column for `color`: an exact column, else a param, metric or tag of that name."""
    for candidate in (name, f"params.{name}", f"metrics.{name}", f"tags.{name}"):
        if candidate in frame.columns:
            return candidate
    listed = ", ".join(c for c in frame.columns if frame[c].notna().any())
    raise ValidationError(f"Unknown column {name!r} to color by (known: {listed}).")


def bare(column: str) -> str:
    """Axis label: the bare key for params/metrics, which is what users typed in notebooks."""
    for prefix in ("params.", "metrics.", "tags."):
        if column.startswith(prefix):
            return column[len(prefix) :]
    return column


# --------------------------------------------------------------------------------------------
# Values


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def numeric(series: pd.Series) -> pd.Series | None:
    """The series as floats if every present value is a real number (not a bool), else None."""
    present = [v for v in series if not is_missing(v)]
    if not present:
        return None
    if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in present):  # fmt: skip
        return None
    return pd.to_numeric(series, errors="coerce").astype(float)


def text(value: Any) -> str:
    """A stable text form of any param value, used as a category and to compare runs."""
    if is_missing(value):
        return MISSING_LABEL
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _sort_key(label: str) -> tuple[int, float, str]:
    """Categories in a natural order: numbers by value, then text, the missing marker last."""
    if label == MISSING_LABEL:
        return (2, 0.0, label)
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def categories(series: pd.Series) -> tuple[pd.Series, list[str]]:
    """Text labels of a categorical series and their display order."""
    labels = series.map(text)
    return labels, sorted(set(labels), key=_sort_key)


def metric_values(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


# --------------------------------------------------------------------------------------------
# Run labels


def varying_params(frame: pd.DataFrame) -> list[str]:
    """Param columns whose value is not the same in every run: the only ones that explain anything."""
    return [c for c in frame.columns if c.startswith("params.") and frame[c].map(text).nunique() > 1]


def short_id(run_id: str) -> str:
    """The random tail of a run id (`20261124-235901-1a2b3c4d` -> `1a2b3c4d`)."""
    return run_id.rsplit("-", 1)[-1] or run_id


def _cut(value: str) -> str:
    return value if len(value) <= LABEL_VALUE_CHARS else value[: LABEL_VALUE_CHARS - 1] + "…"


def run_labels(frame: pd.DataFrame) -> dict[str, str]:
    """A short, unique label per run id: the params that differ between the runs (`lr=0.1, depth=3`).

    With no differing param a run is its short id; two runs with the same label (e.g. a repeated
    run) get their short id appended, or their whole id when even that is shared.
    """
    ids = frame["run_id"].astype(str).tolist()
    columns = varying_params(frame)
    shown = columns[:LABEL_PARAMS]
    if not shown:
        labels = [short_id(run_id) for run_id in ids]
    else:
        texts = {c: frame[c].map(text).tolist() for c in shown}
        more = ", …" if len(columns) > len(shown) else ""
        labels = [", ".join(f"{bare(c)}={_cut(texts[c][row])}" for c in shown) + more for row in range(len(ids))]
    taken = pd.Series(labels).value_counts()
    if shown:
        labels = [f"{label} ({short_id(run_id)})" if taken[label] > 1 else label
                  for label, run_id in zip(labels, ids, strict=True)]  # fmt: skip
        taken = pd.Series(labels).value_counts()
    labels = [run_id if taken[label] > 1 else label for label, run_id in zip(labels, ids, strict=True)]
    return dict(zip(ids, labels, strict=True))

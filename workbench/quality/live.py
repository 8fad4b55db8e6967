"""Live quality of a served model per version and time window: `workbench monitor NAME --window 1h`.

The rows are the logged predictions joined with the outcomes callers reported
(`quality.outcomes.joined`). Per (version, window start) the table gives:

- traffic: `requests` (distinct request ids) and `rows`; shadow predictions (a candidate answering
  a copy of the request off the response path) are never traffic of the served answer: they get a
  row of their own, `shadow=True`, with the same columns computed over the shadow's lines;
- `errors` and `error_rate`: the requests the server failed (5xx: the model or the server broke), which
  it logs beside the predictions (`serving.predlog.failures_dir`), and errors / (requests + errors).
  A caller's bad input (4xx) is not an error of the version. Logs from a model server older than
  failure logging (no failures folder) give NaN: unknown, never a "0 errors" nobody counted;
- `latency_p50/p95/p99` in ms, one value per request;
- `outcomes`: rows that have an outcome, and the task metrics over them (see `quality.metrics`):
  accuracy, macro F1 and log loss (rows that logged "proba") for classifiers, MAE and RMSE for
  regressors; NaN where a window has no outcome yet;
- `psi`: prediction drift, the population stability index of the window's predictions against the
  version's own predictions on its training snapshot (`serving.monitor`'s reference).

Windows start at multiples of the window length since the Unix epoch (UTC): 1h windows start on the
hour and 1d windows at UTC midnight, so two reports over the same rows agree on their windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import NotFoundError
from workbench.models.registry import ModelVersion, versions
from workbench.quality.metrics import (
    CLASSIFICATION,
    REGRESSION,
    TASK_METRICS,
    is_classification,
    labels,
    latency_percentiles,
    parse_since,
    parse_span,
    task_metrics,
)
from workbench.quality.outcomes import joined
from workbench.remote.dispatch import remote_capable
from workbench.serving.monitor import categorical_psi, psi, reference_predictions
from workbench.serving.predlog import failures_dir
from workbench.snapshots.store import load as load_snapshot
from workbench.workspace import Workspace, current_workspace

#: The columns every table has, before the task's metrics and `psi`.
BASE_COLUMNS = ["version", "shadow", "start", "requests", "rows", "errors", "error_rate", "latency_p50",
                "latency_p95", "latency_p99", "outcomes"]  # fmt: skip
_INTEGERS = ("version", "requests", "rows", "outcomes")


def table_columns(task: str) -> list[str]:
    return [*BASE_COLUMNS, *TASK_METRICS[task], "psi"]


@dataclass
class LiveQuality:
    """Quality of model `model` per version and window. `counts` are the join's: `outcomes`,
    `duplicates` and `unknown` over everything recorded, `matched` and `pending` over the served
    (non-shadow) predictions since `since` (see `quality.outcomes.joined`)."""

    model: str
    window: str
    since: pd.Timestamp | None
    task: str
    table: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    errors_logged: bool = False  # whether the model server logged its failures (else `errors` is NaN)

    @property
    def metrics(self) -> tuple[str, ...]:
        return TASK_METRICS[self.task]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: times as ISO text, NaN as null."""
        rows = self.table.astype(object).where(self.table.notna(), None)
        rows["start"] = [t.isoformat() if t is not None else None for t in rows["start"]]
        return {"model": self.model, "window": self.window, "task": self.task, "metrics": list(self.metrics),
                "since": self.since.isoformat() if self.since is not None else None, "counts": dict(self.counts),
                "errors_logged": self.errors_logged, "rows": rows.to_dict(orient="records")}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiveQuality:
        """The report `to_dict` describes, with the same table (columns, order, dtypes)."""
        table = _typed(pd.DataFrame(data["rows"], columns=table_columns(data["task"])), data["task"])
        since = pd.Timestamp(data["since"]) if data.get("since") else None
        return cls(data["model"], data["window"], since, data["task"], table, dict(data.get("counts") or {}),
                   bool(data.get("errors_logged")))

    def figures(self) -> dict[str, Any]:
        """Plotly figures over time, one per measure: "traffic" (requests per served version,
        stacked), "latency_p95", each task metric and "psi"; one line per version (shadows dashed)."""
        from workbench.quality.figures import live_figures

        return live_figures(self)

    def to_html(self, include_plotlyjs: bool | str = "inline") -> str:
        """An HTML fragment: the figures, then the table."""
        figures = "".join(fig.to_html(full_html=False, include_plotlyjs=include_plotlyjs if i == 0 else False)
                          for i, fig in enumerate(self.figures().values()))  # fmt: skip
        table = self.table.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="")
        return f"<h2>Live quality: {self.model} per {self.window}</h2>{figures}{table}"


@remote_capable("live_quality")
def live_quality(model: str, window: str = "1h", since: str | None = "7d", ws: Workspace | None = None) -> LiveQuality:
    """Quality of `model`'s served versions per `window` ("15m", "1h", "1d"...) since `since` (a
    span back from now such as "7d", an ISO time, or None for everything). With a team server
    configured (and no `ws`) the server computes it over every model server's shipped logs."""
    step, start = parse_span(window, "--window"), parse_since(since)
    ws = ws or current_workspace()
    registered = {v.version: v for v in versions(model, ws)}
    frame, counts = joined(ws, model, start.to_pydatetime() if start is not None else None)
    latest = registered[max(registered)]
    task = CLASSIFICATION if is_classification(latest.meta, frame["prediction"]) else REGRESSION
    frame["start"] = frame["at"].dt.floor(step)
    references = _References(registered, task, ws)
    logged = failures_dir(ws, model).is_dir()
    failed = _failures(ws, model, start, step) if logged else {}
    rows = [
        {
            "version": version,
            "shadow": shadow,
            "start": window_start,
            **_window_row(group, task, None if shadow or not logged else failed.pop((version, window_start), 0)),
            "psi": references.psi(version, group["prediction"]),
        }  # fmt: skip
        for (version, shadow, window_start), group in frame.groupby(["version", "shadow", "start"], sort=True)
    ]
    empty = frame.iloc[0:0]
    rows += [{"version": version, "shadow": False, "start": window_start, **_window_row(empty, task, errors),
              "psi": np.nan} for (version, window_start), errors in failed.items()]  # fmt: skip  (only failures)
    table = _typed(pd.DataFrame(rows, columns=table_columns(task)), task)
    return LiveQuality(model, window, start, task, table, {k: int(v) for k, v in counts.items()}, logged)


@remote_capable("ab_summary")
def ab_summary(model: str, since: str | None = None, ws: Workspace | None = None) -> dict[str, Any] | None:
    """Every version of `model` against the baseline (`quality.abtest.ab_report(...).to_dict()`) over
    the rows logged since `since` (ISO time), or None until two versions have outcomes (the lab's
    Monitor view; answered by a team server when one is configured)."""
    from workbench.quality.abtest import ab_report

    frame, _ = joined(ws or current_workspace(), model, since)
    if frame.loc[frame["outcome"].notna(), "version"].nunique() < 2:
        return None
    return ab_report(frame).to_dict()


def _failures(ws: Workspace, model: str, start: pd.Timestamp | None, step: pd.Timedelta) -> dict[tuple[int, Any], int]:
    """How many requests the server failed, per (version, window start), since `start`."""
    from workbench.quality.outcomes import _jsonl_files, _read_jsonl

    files = _jsonl_files(failures_dir(ws, model))
    lines = _read_jsonl(files, {"at": "VARCHAR", "version": "BIGINT", "status": "BIGINT"}, '"at", "version"')
    if start is not None:
        lines = lines[lines["at"] >= start]
    if lines.empty:
        return {}
    counted = lines.groupby([lines["version"], lines["at"].dt.floor(step)]).size()
    return {(int(version), window_start): int(n) for (version, window_start), n in counted.items()}


def _window_row(rows: pd.DataFrame, task: str, errors: int | None) -> dict[str, Any]:
    """The measures of one window's rows; `errors`: the failures logged then (None: not logged)."""
    matched = rows[rows["outcome_at"].notna()]
    requests = rows["request_id"].nunique()
    rate = np.nan if errors is None or requests + errors == 0 else errors / (requests + errors)
    return {"requests": requests, "rows": len(rows), "errors": np.nan if errors is None else errors,
            "error_rate": rate, **latency_percentiles(rows), "outcomes": len(matched),
            **task_metrics(task, matched)}  # fmt: skip


def _typed(table: pd.DataFrame, task: str) -> pd.DataFrame:
    types: dict[str, Any] = {c: float for c in table.columns}
    types.update({c: "int64" for c in _INTEGERS}, shadow=bool, start=object)
    table = table.astype(types)
    table["start"] = pd.to_datetime(table["start"], utc=True)
    return table.sort_values(["start", "version", "shadow"], ignore_index=True)


class _References:
    """Each version's predictions on its training snapshot, computed once per report; None for a
    version with no training snapshot in its lineage (its `psi` is then NaN)."""

    def __init__(self, registered: dict[int, ModelVersion], task: str, ws: Workspace) -> None:
        self.registered, self.task, self.ws = registered, task, ws
        self._cache: dict[int, pd.Series | None] = {}

    def expected(self, version: int) -> pd.Series | None:
        if version not in self._cache:
            self._cache[version] = self._compute(version)
        return self._cache[version]

    def _compute(self, version: int) -> pd.Series | None:
        found = self.registered.get(version)
        if found is None or not found.inputs:
            return None
        try:
            reference = load_snapshot(found.inputs[0], ws=self.ws)
        except NotFoundError:  # the training snapshot was deleted since
            return None
        columns = [c["name"] for c in found.schema or [] if c["name"] in reference.columns]
        expected = reference_predictions(found, reference[columns], self.ws)
        return labels(expected) if self.task == CLASSIFICATION else expected

    def psi(self, version: int, live: pd.Series) -> float:
        expected = self.expected(version)
        if expected is None or live.empty:
            return np.nan
        if self.task == CLASSIFICATION:
            return categorical_psi(expected, labels(live))
        numbers = pd.to_numeric(live, errors="coerce").dropna()
        return psi(expected.to_numpy(float), numbers.to_numpy(float)) if len(numbers) else np.nan


def display_rows(report: LiveQuality) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the table as text for a terminal or TSV: shadow versions marked, unknown
    values (`errors`, metrics of a window without outcomes) shown as "n/a"."""
    headers = ["version", "start", *table_columns(report.task)[3:]]
    rows = []
    for row in report.table.to_dict(orient="records"):
        version = f"{row['version']} (shadow)" if row["shadow"] else str(row["version"])
        cells = [version, f"{row['start']:%Y-%m-%d %H:%M}"]
        for column in headers[2:]:
            value = row[column]
            digits = 1 if column.startswith("latency") else 4
            cells.append("n/a" if pd.isna(value) else str(value) if column in _INTEGERS else f"{value:.{digits}f}")
        rows.append(cells)
    return headers, rows


def append_to_html(report: LiveQuality, path: str | Path) -> None:
    """Add the figures and table to an HTML report already written there (the drift report, which
    loads plotly.js), before its closing body tag."""
    path = Path(path)
    text = path.read_text()
    at = text.rfind("</body>")
    at = len(text) if at < 0 else at
    path.write_text(text[:at] + report.to_html(include_plotlyjs=False) + text[at:])

"""Comparing runs: plotly figures over many runs and a side-by-side diff report.

Every function takes the runs to compare in whatever form the user has at hand: the DataFrame
returned by `wb.runs(...)` (so filtering happens once, in SQL), or a list of run ids / `Run`
objects (then each run is read with `get_run`). All figures are plain
`plotly.graph_objects.Figure` objects, so the same code serves JupyterLab, exported HTML and the
JavaScript front end (via `fig.to_json()`).

Parameters are either numeric (plotted on a numeric axis, ranked for correlations) or
categorical (anything else, including booleans, lists and dicts, compared by their text form).
Metric and parameter names may be given bare (`"rmse"`) or prefixed (`"metrics.rmse"`).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from workbench.errors import NotFoundError, ValidationError
from workbench.runs.ids import check_run_id
from workbench.runs.store import Run, metric_history
from workbench.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    import plotly.graph_objects as go

RunsLike = Union[pd.DataFrame, Sequence[Union[str, Run]], str, Run]

BASE_COLUMNS = ["run_id", "experiment", "status", "created_at", "duration_s", "notebook", "sweep_id", "parent_run_id"]
MISSING_LABEL = "(none)"
#: At most this many "metric vs param" scatter plots in a comparison (the most important params).
MAX_SCATTERS = 4
#: Beyond this many runs, step curves are plain lines without a legend (hover still names the run).
MANY_CURVES = 50
_RUNS_HINT = "Pass the DataFrame from wb.runs(...) or a list of run ids / Run objects (see 'workbench runs list')."

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


def _ordered_columns(columns: Sequence[str]) -> list[str]:
    base = [c for c in BASE_COLUMNS if c in columns]
    groups = [sorted(c for c in columns if c.startswith(p)) for p in ("params.", "metrics.", "tags.")]
    rest = [c for c in columns if c not in base and not any(c in g for g in groups)]
    return base + [c for g in groups for c in g] + rest


def _query_ids(run_ids: list[str], ws: Workspace | None) -> dict[str, dict[str, Any]]:
    """Rows for run ids from one catalog query per batch (opening the catalog per run is slow)."""
    from workbench.runs.filters import MAX_PREDICATES
    from workbench.runs.query import runs

    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(run_ids), MAX_PREDICATES):
        batch = [check_run_id(r) for r in run_ids[start : start + MAX_PREDICATES]]
        listed = ", ".join(f"'{r}'" for r in batch)  # safe: check_run_id allows only [0-9a-f-]
        frame = runs(filter=f"run_id in ({listed})", ws=ws)
        found.update({row["run_id"]: row for row in frame.to_dict("records")})
    missing = [r for r in run_ids if r not in found]
    if missing:
        raise NotFoundError(f"No run {', '.join(missing)}.", "List runs with 'workbench runs list'.")
    return found


def _frame_of_items(items: list[Any], ws: Workspace | None) -> pd.DataFrame:
    """Wide rows for a list mixing run ids and Run objects, in the given order."""
    bad = next((item for item in items if not isinstance(item, (str, Run))), None)
    if bad is not None:
        raise ValidationError(f"Cannot compare {type(bad).__name__} {bad!r}: not a run.", _RUNS_HINT)
    by_id = _query_ids([item for item in items if isinstance(item, str)], ws)
    rows = [_row_of(item) if isinstance(item, Run) else by_id[item] for item in items]
    frame = pd.DataFrame(rows)
    return frame[_ordered_columns(list(frame.columns))] if rows else frame


def runs_frame(runs: RunsLike, ws: Workspace | None = None) -> pd.DataFrame:
    """The runs as a wide DataFrame (one row per run, unique run ids, in the given order).

    Raises ValidationError when there is nothing to compare, since every figure would be empty.
    """
    if isinstance(runs, pd.DataFrame):
        if "run_id" not in runs.columns:
            raise ValidationError("The runs DataFrame has no 'run_id' column.", _RUNS_HINT)
        frame = runs.copy()
    elif isinstance(runs, (str, Run)):
        frame = _frame_of_items([runs], ws)
    elif isinstance(runs, Iterable):
        frame = _frame_of_items(list(runs), ws)
    else:
        raise ValidationError(f"Cannot compare {type(runs).__name__} {runs!r}: not runs.", _RUNS_HINT)
    if frame.empty:
        raise ValidationError("No runs to compare.", _RUNS_HINT + " Check the filter or experiment name.")
    frame = frame.drop_duplicates(subset="run_id").reset_index(drop=True)
    frame["run_id"] = frame["run_id"].astype(str)
    return frame


def _known(frame: pd.DataFrame, prefix: str) -> list[str]:
    """Bare names of the params / metrics with at least one value among the runs."""
    return [c[len(prefix) :] for c in frame.columns if c.startswith(prefix) and frame[c].notna().any()]


def _resolve(frame: pd.DataFrame, name: str, prefix: str, what: str) -> str:
    """The column for a metric or param name, or a ValidationError listing the known names."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"The {what} name must be a non-empty string, not {name!r}.")
    column = name if name.startswith(prefix) else prefix + name
    known = _known(frame, prefix)
    if column[len(prefix) :] not in known:
        listed = ", ".join(sorted(known)) or "none"
        logger = "wb.log_metric" if what == "metric" else "the notebook's parameters cell or wb.log_param"
        raise ValidationError(
            f"Unknown {what} {name!r} for these runs (known: {listed}).",
            f"Pick one of the known names; runs get {what}s from {logger}.",
        )
    return column


def _resolve_any(frame: pd.DataFrame, name: str) -> str:
    """A column for `color`: an exact column, else a param, metric or tag of that name."""
    for candidate in (name, f"params.{name}", f"metrics.{name}", f"tags.{name}"):
        if candidate in frame.columns:
            return candidate
    listed = ", ".join(c for c in frame.columns if frame[c].notna().any())
    raise ValidationError(f"Unknown column {name!r} to color by (known: {listed}).")


def _label(column: str) -> str:
    """Axis label: the bare key for params/metrics, which is what users typed in notebooks."""
    for prefix in ("params.", "metrics.", "tags."):
        if column.startswith(prefix):
            return column[len(prefix) :]
    return column


# --------------------------------------------------------------------------------------------
# Value handling


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def _numeric(series: pd.Series) -> pd.Series | None:
    """The series as floats if every present value is a real number (not a bool), else None."""
    present = [v for v in series if not _is_missing(v)]
    if not present:
        return None
    if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in present):  # fmt: skip
        return None
    return pd.to_numeric(series, errors="coerce").astype(float)


def _text(value: Any) -> str:
    """A stable text form of any param value, used as a category and to compare runs."""
    if _is_missing(value):
        return MISSING_LABEL
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _sort_key(text: str) -> tuple[int, float, str]:
    """Categories in a natural order: numbers by value, then text, the missing marker last."""
    if text == MISSING_LABEL:
        return (2, 0.0, text)
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _categories(series: pd.Series) -> tuple[pd.Series, list[str]]:
    """Text labels of a categorical series and their display order."""
    labels = series.map(_text)
    return labels, sorted(set(labels), key=_sort_key)


def _metric_values(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


# --------------------------------------------------------------------------------------------
# Figures


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def metric_vs_param(
    runs: RunsLike, metric: str, param: str, color: str | None = None, ws: Workspace | None = None
) -> go.Figure:
    """Scatter of a metric against one param, one point per run (hover shows the run id).

    A categorical param gets a category axis in natural order; `color` (a param, metric, tag or
    column such as "status") colors numeric values on a scale and categories as separate traces.
    """
    go = _go()
    frame = runs_frame(runs, ws)
    m_col, p_col = _resolve(frame, metric, "metrics.", "metric"), _resolve(frame, param, "params.", "param")
    y = _metric_values(frame, m_col)
    numeric_x = _numeric(frame[p_col])
    if numeric_x is not None:
        x: pd.Series = numeric_x
        xaxis: dict[str, Any] = {"title": _label(p_col)}
    else:
        x, order = _categories(frame[p_col])
        xaxis = {"title": _label(p_col), "type": "category", "categoryorder": "array", "categoryarray": order}
    fig = go.Figure()
    hover = f"run %{{text}}<br>{_label(p_col)}=%{{x}}<br>{_label(m_col)}=%{{y}}<extra></extra>"
    if color is None:
        fig.add_trace(go.Scatter(x=x, y=y, text=frame["run_id"], mode="markers", name=_label(m_col),
                                 hovertemplate=hover))  # fmt: skip
    else:
        c_col = _resolve_any(frame, color)
        numeric_c = _numeric(frame[c_col])
        if numeric_c is not None:
            marker = {"color": numeric_c, "colorscale": "Viridis", "showscale": True,
                      "colorbar": {"title": _label(c_col)}}  # fmt: skip
            fig.add_trace(go.Scatter(x=x, y=y, text=frame["run_id"], mode="markers", marker=marker,
                                     name=_label(m_col), hovertemplate=hover))  # fmt: skip
        else:
            labels, order = _categories(frame[c_col])
            for value in order:
                mask = labels == value
                fig.add_trace(go.Scatter(x=x[mask], y=y[mask], text=frame["run_id"][mask], mode="markers",
                                         name=f"{_label(c_col)}={value}", hovertemplate=hover))  # fmt: skip
    fig.update_layout(title=f"{_label(m_col)} vs {_label(p_col)}", xaxis=xaxis, yaxis={"title": _label(m_col)},
                      template="plotly_white")  # fmt: skip
    return fig


def _varying_params(frame: pd.DataFrame) -> list[str]:
    """Param columns whose value is not the same in every run: the only ones that explain anything."""
    return [c for c in frame.columns if c.startswith("params.") and frame[c].map(_text).nunique() > 1]


def _dimension(series: pd.Series, label: str) -> dict[str, Any]:
    """A parallel-coordinates axis: numbers as they are, categories as codes with tick labels.

    A numeric param missing in some runs becomes categorical, because a parcoords axis cannot
    show a missing value and dropping the run would hide it.
    """
    numeric = _numeric(series)
    if numeric is not None and numeric.notna().all():
        return {"label": label, "values": numeric.tolist()}
    labels, order = _categories(series)
    codes = labels.map({value: index for index, value in enumerate(order)})
    return {"label": label, "values": codes.tolist(), "tickvals": list(range(len(order))), "ticktext": order,
            "range": [-0.5, len(order) - 0.5] if len(order) == 1 else [0, len(order) - 1]}  # fmt: skip


def parallel_coordinates(
    runs: RunsLike, metric: str, params: Sequence[str] | None = None, ws: Workspace | None = None
) -> go.Figure:
    """One axis per param plus the metric, one line per run colored by the metric.

    Without `params`, every param that differs between the runs is shown; runs without a value
    for the metric are left out (their line would have no end to color).
    """
    go = _go()
    frame = runs_frame(runs, ws)
    m_col = _resolve(frame, metric, "metrics.", "metric")
    columns = [_resolve(frame, p, "params.", "param") for p in params] if params is not None else _varying_params(frame)
    values = _metric_values(frame, m_col)
    frame, values = frame[values.notna()].reset_index(drop=True), values[values.notna()].reset_index(drop=True)
    if frame.empty:
        raise ValidationError(f"No run has a value for metric {_label(m_col)!r}.")
    dimensions = [_dimension(frame[c], _label(c)) for c in columns]
    dimensions.append({"label": _label(m_col), "values": values.tolist()})
    line = {"color": values.tolist(), "colorscale": "Viridis", "showscale": True,
            "colorbar": {"title": _label(m_col)}}  # fmt: skip
    fig = go.Figure(go.Parcoords(line=line, dimensions=dimensions))
    fig.update_layout(title=f"{_label(m_col)} across parameters ({len(frame)} runs)", template="plotly_white")
    return fig


def step_curves(runs: RunsLike, metric: str, ws: Workspace | None = None) -> go.Figure:
    """Every logged step of a metric, one line per run, to compare learning curves."""
    go = _go()
    frame = runs_frame(runs, ws)
    m_col = _resolve(frame, metric, "metrics.", "metric")
    ws = ws or current_workspace()
    history = metric_history(list(frame["run_id"]), _label(m_col), ws).sort_values(["run_id", "step"])
    # one pass over the history in plain Python (a pandas filter per run took seconds for 1,000 runs)
    curves: dict[str, tuple[list[Any], list[Any]]] = {}
    for run_id, step, value in zip(history["run_id"].tolist(), history["step"].tolist(), history["value"].tolist(),
                                   strict=True):  # fmt: skip
        steps, values = curves.setdefault(str(run_id), ([], []))
        steps.append(step)
        values.append(value)
    label = _label(m_col)
    many = len(curves) > MANY_CURVES  # markers and a legend entry per run would bury the lines (and slow drawing)
    traces = [  # plain dicts: the Figure validates each once (Scatter objects get validated, then copied)
        {"type": "scatter", "x": curve[0], "y": curve[1], "mode": "lines" if many else "lines+markers", "name": run_id,
         "hovertemplate": f"run {run_id}<br>step %{{x}}<br>{label}=%{{y}}<extra></extra>"}
        for run_id in frame["run_id"] if (curve := curves.get(run_id)) is not None
    ]  # fmt: skip
    fig = go.Figure(data=traces)
    fig.update_layout(title=f"{label} by step", xaxis={"title": "step"}, yaxis={"title": label},
                      template="plotly_white", legend={"title": "run"}, showlegend=not many)  # fmt: skip
    return fig


def metric_bars(runs: RunsLike, metric: str, ascending: bool = True, ws: Workspace | None = None) -> go.Figure:
    """One bar per run with the metric's last value, sorted so the best run is at one end.

    Runs without the metric are left out rather than drawn as zero, which would look like a value.
    """
    go = _go()
    frame = runs_frame(runs, ws)
    m_col = _resolve(frame, metric, "metrics.", "metric")
    data = pd.DataFrame({"run_id": frame["run_id"], "value": _metric_values(frame, m_col)}).dropna()
    data = data.sort_values(["value", "run_id"], ascending=[ascending, True])
    fig = go.Figure(go.Bar(x=data["run_id"].tolist(), y=data["value"].tolist(), name=_label(m_col),
                           hovertemplate=f"run %{{x}}<br>{_label(m_col)}=%{{y}}<extra></extra>"))  # fmt: skip
    fig.update_layout(title=f"{_label(m_col)} by run", template="plotly_white", yaxis={"title": _label(m_col)},
                      xaxis={"title": "run", "type": "category", "categoryorder": "array",
                             "categoryarray": data["run_id"].tolist()})  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------------
# Importance


def _spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rho as the Pearson correlation of average ranks (NaN when either is constant)."""
    rx, ry = x.rank(), y.rank()
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _correlation_ratio(labels: pd.Series, y: pd.Series) -> float:
    """Eta: the share of the metric's spread explained by the category, on the same 0..1 scale as |rho|."""
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0:
        return float("nan")
    groups = y.groupby(labels.values)
    between = float((groups.count() * (groups.mean() - y.mean()) ** 2).sum())
    return math.sqrt(max(0.0, min(1.0, between / total)))


def param_importance_table(
    runs: RunsLike, metric: str, params: Sequence[str] | None = None, ws: Workspace | None = None
) -> pd.DataFrame:
    """How strongly each param goes with the metric: |Spearman rho| for numeric params, the
    correlation ratio (eta) for categorical ones; both in 0..1, higher means more related.

    Columns: param, importance, method, n_runs, sorted by importance. Only runs with the metric
    count; params that do not vary among them are left out, since they cannot explain anything.
    This is correlation over the runs at hand, not causation: few runs give noisy scores.
    """
    frame = runs_frame(runs, ws)
    m_col = _resolve(frame, metric, "metrics.", "metric")
    columns = [_resolve(frame, p, "params.", "param") for p in params] if params is not None else [
        c for c in frame.columns if c.startswith("params.")]  # fmt: skip
    y_all = _metric_values(frame, m_col)
    rows = []
    for column in columns:
        numeric = _numeric(frame[column])
        if numeric is not None:
            mask = y_all.notna() & numeric.notna()
            score, method = _spearman(numeric[mask], y_all[mask]), "spearman"
        else:
            mask = y_all.notna()
            labels = frame.loc[mask, column].map(_text)
            score, method = _correlation_ratio(labels, y_all[mask]), "correlation ratio"
            if labels.nunique() < 2:
                score = float("nan")
        if math.isnan(score):
            continue
        importance = round(abs(score), 12)  # float noise: a param unrelated to the metric shows 0, not 1e-16
        rows.append({"param": _label(column), "importance": importance, "method": method, "n_runs": int(mask.sum())})
    table = pd.DataFrame(rows, columns=["param", "importance", "method", "n_runs"])
    return table.sort_values(["importance", "param"], ascending=[False, True]).reset_index(drop=True)


def param_importance(
    runs: RunsLike, metric: str, params: Sequence[str] | None = None, ws: Workspace | None = None
) -> go.Figure:
    """`param_importance_table` as a horizontal bar chart, the most related param on top."""
    go = _go()
    table = param_importance_table(runs, metric, params, ws)
    if table.empty:
        raise ValidationError(
            f"No param varies among the runs with metric {_label(metric)!r}, so there is nothing to rank.",
            "Compare runs with different parameter values (e.g. the runs of a sweep).",
        )
    ordered = table.iloc[::-1]
    fig = go.Figure(go.Bar(x=ordered["importance"].tolist(), y=ordered["param"].tolist(), orientation="h",
                           customdata=ordered[["method", "n_runs"]].values.tolist(),
                           hovertemplate="%{y}: %{x:.3f}<br>%{customdata[0]} over %{customdata[1]} runs"
                           "<extra></extra>"))  # fmt: skip
    fig.update_layout(title=f"Parameter importance for {_label(metric)}", template="plotly_white",
                      xaxis={"title": "|Spearman rho| / correlation ratio", "range": [0, 1]},
                      yaxis={"title": "param", "type": "category"})  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------------
# Side-by-side comparison


def diff_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows params.*, metrics.*, tags.*; a column per run; `differs` when the runs disagree.

    A key that one run has and another lacks counts as a difference.
    """
    keys = [c for c in _ordered_columns(list(frame.columns)) if c.startswith(("params.", "metrics.", "tags."))]
    body = frame.set_index("run_id")[keys].T.astype(object)
    body.columns = list(body.columns)
    body.index.name = "key"
    texts = body.map(_text)
    body = body.where(body.notna(), None)
    body["differs"] = (texts.nunique(axis=1) > 1).astype(bool) if len(keys) else pd.Series(dtype=bool)
    return body


def _default_metric(frame: pd.DataFrame) -> str | None:
    """The metric most runs have (alphabetical on ties): the one a comparison most likely is about."""
    counts = {name: int(frame[f"metrics.{name}"].notna().sum()) for name in _known(frame, "metrics.")}
    if not counts:
        return None
    return sorted(counts, key=lambda name: (-counts[name], name))[0]


def _cell(value: Any) -> str:
    if _is_missing(value):
        return '<span class="wb-missing">—</span>'
    if isinstance(value, (float, np.floating)):
        return html.escape(f"{float(value):.6g}")
    return html.escape(_text(value))


TABLE_CSS = """
.wb-compare { font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", sans-serif; font-size: 13px; }
.wb-compare table { border-collapse: collapse; margin: 8px 0; }
.wb-compare th, .wb-compare td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
.wb-compare th { background: #f5f5f5; }
.wb-compare tr.wb-differs td, .wb-compare tr.wb-differs th { background: #fff3cd; }
.wb-compare .wb-missing { color: #999; }
"""


class Comparison:
    """Runs side by side: `.table` (params/metrics/tags x runs, plus `differs`) and `.figures`.

    Displays itself in a notebook and writes a standalone HTML report with `.to_html(path)`.
    """

    def __init__(self, frame: pd.DataFrame, metric: str | None, figures: dict[str, go.Figure]) -> None:
        self.runs = frame
        self.metric = metric
        self.table = diff_table(frame)
        self.figures = figures

    @property
    def run_ids(self) -> list[str]:
        return list(self.runs["run_id"])

    @property
    def differences(self) -> pd.DataFrame:
        """Only the rows where the runs disagree."""
        return self.table[self.table["differs"]]

    def table_html(self) -> str:
        """The diff table as HTML, differing rows highlighted (escaped: values are user text)."""
        head = "".join(f"<th>{html.escape(r)}</th>" for r in self.run_ids)
        rows = []
        for key, row in self.table.iterrows():
            css = ' class="wb-differs"' if row["differs"] else ""
            cells = "".join(f"<td>{_cell(row[r])}</td>" for r in self.run_ids)
            rows.append(f"<tr{css}><th>{html.escape(str(key))}</th>{cells}</tr>")
        if not rows:
            rows.append(f'<tr><td colspan="{len(self.run_ids) + 1}">No params, metrics or tags recorded.</td></tr>')
        return f"<table><thead><tr><th>key</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

    def _summary(self) -> str:
        n_diff = int(self.table["differs"].sum())
        metric = f" Figures for metric <b>{html.escape(self.metric)}</b>." if self.metric else ""
        return (f"<h2>Comparing {len(self.run_ids)} runs</h2>"
                f"<p>{n_diff} of {len(self.table)} params/metrics/tags differ (highlighted).{metric}</p>")  # fmt: skip

    def _body(self, include_plotlyjs: bool | str) -> str:
        parts = [self._summary(), self.table_html()]
        for index, fig in enumerate(self.figures.values()):
            parts.append(fig.to_html(full_html=False, include_plotlyjs=include_plotlyjs if index == 0 else False))
        return f'<div class="wb-compare"><style>{TABLE_CSS}</style>{"".join(parts)}</div>'

    def mimebundles(self) -> list[dict[str, Any]]:
        """Display bundles: the diff table, then each figure as plotly's own mimetype.

        JupyterLab renders the plotly mimetype with its bundled extension, which avoids sending
        plotly.js (megabytes) with every display; other front ends fall back to HTML that loads it.
        """
        header = f'<div class="wb-compare"><style>{TABLE_CSS}</style>{self._summary()}{self.table_html()}</div>'
        bundles: list[dict[str, Any]] = [{"text/html": header, "text/plain": repr(self)}]
        for name, fig in self.figures.items():
            bundles.append({"application/vnd.plotly.v1+json": {**json.loads(fig.to_json()), "config": {}},
                            "text/html": fig.to_html(full_html=False, include_plotlyjs="cdn"),
                            "text/plain": f"<Figure {name}>"})  # fmt: skip
        return bundles

    def show(self) -> None:
        """Display in a notebook the light way (see `mimebundles`)."""
        from IPython.display import display

        for bundle in self.mimebundles():
            display(bundle, raw=True)

    def _repr_html_(self) -> str:
        # Inline plotly.js (once) so the output also renders offline and in exported notebooks.
        return self._body(include_plotlyjs=True)

    def to_html(self, path: str | Path) -> Path:
        """Write one self-contained HTML file (plotly.js inlined once) and return its path."""
        target = Path(path)
        title = html.escape(f"Workbench run comparison: {', '.join(self.run_ids[:5])}"
                            + (" ..." if len(self.run_ids) > 5 else ""))  # fmt: skip
        document = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
                    f"<body>{self._body(include_plotlyjs=True)}</body></html>\n")  # fmt: skip
        try:
            target.write_text(document, encoding="utf-8")
        except OSError as exc:
            raise ValidationError(f"Cannot write the comparison report to {target}: {exc.strerror}.") from exc
        return target

    def __repr__(self) -> str:
        return f"<Comparison of {len(self.run_ids)} runs, metric={self.metric!r}, figures={list(self.figures)}>"


def compare(runs: RunsLike, metric: str | None = None, ws: Workspace | None = None) -> Comparison:
    """Runs side by side: a diff table of params/metrics/tags and figures for `metric`.

    Without `metric`, the metric most runs logged is used. Figures that need something the
    runs lack (a varying param, a second run) are simply not included.
    """
    frame = runs_frame(runs, ws)
    column = _resolve(frame, metric, "metrics.", "metric") if metric is not None else None
    name = _label(column) if column else _default_metric(frame)
    figures: dict[str, go.Figure] = {}
    if name is not None:
        figures["metric_bars"] = metric_bars(frame, name, ws=ws)
        curves = step_curves(frame, name, ws=ws)
        if curves.data:
            figures["step_curves"] = curves
        varying = _varying_params(frame[_metric_values(frame, f"metrics.{name}").notna()])
        if varying:
            importance = param_importance_table(frame, name, [_label(c) for c in varying], ws=ws)
            if not importance.empty:
                figures["param_importance"] = param_importance(frame, name, list(importance["param"]), ws=ws)
            figures["parallel_coordinates"] = parallel_coordinates(frame, name, [_label(c) for c in varying], ws=ws)
            ranked = list(importance["param"])
            ranked += [_label(c) for c in varying if _label(c) not in ranked]
            for param in ranked[:MAX_SCATTERS]:
                figures[f"metric_vs_{param}"] = metric_vs_param(frame, name, param, ws=ws)
    return Comparison(frame, name, figures)

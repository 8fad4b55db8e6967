"""Plotly figures over many runs: metric vs param, parallel coordinates, step curves, metric by run.

Runs appear under their labels (the params that differ, see `frame.run_labels`); the run id is in
every hover text. All figures are plain `plotly.graph_objects.Figure` objects, so the same code
serves JupyterLab, exported HTML and the JavaScript front end (via `fig.to_json()`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.compare.frame import (
    RunsLike,
    bare,
    categories,
    metric_values,
    numeric,
    resolve,
    resolve_any,
    run_labels,
    runs_frame,
    varying_params,
)
from workbench.errors import ValidationError
from workbench.runs.store import metric_history
from workbench.workspace import Workspace

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: Beyond this many runs, step curves are plain lines without a legend (hover still names the run),
#: drawn as one trace per colour rather than one per run (see `step_curves`).
MANY_CURVES = 50
#: The colours runs' curves cycle through: the plotly_white template's colorway (plotly's default).
CURVE_COLOURS = 10
#: Up to this many runs, the metric-by-run chart writes each value beside its dot.
VALUE_TEXTS = 20


def plotly_go() -> Any:
    import plotly.graph_objects as go

    return go


def value_range(values: Sequence[float], pad: tuple[float, float] = (0.1, 0.1)) -> list[float]:
    """An axis range around the values with a small margin (a share of their span below and above):
    not from 0, so that 0.98 vs 1.0 shows."""
    low, high = float(min(values)), float(max(values))
    span = high - low or abs(high) * 0.5 or 1.0  # equal values: a band around them
    return [low - span * pad[0], high + span * pad[1]]


def metric_vs_param(
    runs: RunsLike,
    metric: str,
    param: str,
    color: str | None = None,
    ws: Workspace | None = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """Scatter of a metric against one param, one point per run (hover names the run and its id).

    A categorical param gets a category axis in natural order; `color` (a param, metric, tag or
    column such as "status") colors numeric values on a scale and categories as separate traces.
    `labels` (run id -> label, as `run_labels` gives them) saves working them out again.
    """
    go = plotly_go()
    frame = runs_frame(runs, ws)
    m_col, p_col = resolve(frame, metric, "metrics.", "metric"), resolve(frame, param, "params.", "param")
    y = metric_values(frame, m_col)
    numeric_x = numeric(frame[p_col])
    if numeric_x is not None:
        x: pd.Series = numeric_x
        xaxis: dict[str, Any] = {"title": bare(p_col)}
    else:
        x, order = categories(frame[p_col])
        xaxis = {"title": bare(p_col), "type": "category", "categoryorder": "array", "categoryarray": order}
    texts = frame["run_id"].map(labels if labels is not None else run_labels(frame))
    ids = frame["run_id"]
    fig = go.Figure()
    hover = f"%{{text}}<br>run %{{customdata}}<br>{bare(p_col)}=%{{x}}<br>{bare(m_col)}=%{{y}}<extra></extra>"
    if color is None:
        fig.add_trace(go.Scatter(x=x, y=y, text=texts, customdata=ids, mode="markers", name=bare(m_col),
                                 hovertemplate=hover))  # fmt: skip
    else:
        c_col = resolve_any(frame, color)
        numeric_c = numeric(frame[c_col])
        if numeric_c is not None:
            marker = {"color": numeric_c, "colorscale": "Viridis", "showscale": True,
                      "colorbar": {"title": bare(c_col)}}  # fmt: skip
            fig.add_trace(go.Scatter(x=x, y=y, text=texts, customdata=ids, mode="markers", marker=marker,
                                     name=bare(m_col), hovertemplate=hover))  # fmt: skip
        else:
            color_labels, order = categories(frame[c_col])
            for value in order:
                mask = color_labels == value
                fig.add_trace(go.Scatter(x=x[mask], y=y[mask], text=texts[mask], customdata=ids[mask],
                                         mode="markers", name=f"{bare(c_col)}={value}",
                                         hovertemplate=hover))  # fmt: skip
    fig.update_layout(title=f"{bare(m_col)} vs {bare(p_col)}", xaxis=xaxis, yaxis={"title": bare(m_col)},
                      template="plotly_white")  # fmt: skip
    return fig


def _dimension(series: pd.Series, label: str) -> dict[str, Any]:
    """A parallel-coordinates axis: numbers as they are, categories as codes with tick labels.

    A numeric param missing in some runs becomes categorical, because a parcoords axis cannot
    show a missing value and dropping the run would hide it.
    """
    values = numeric(series)
    if values is not None and values.notna().all():
        return {"label": label, "values": values.tolist()}
    labels, order = categories(series)
    codes = labels.map({value: index for index, value in enumerate(order)})
    return {"label": label, "values": codes.tolist(), "tickvals": list(range(len(order))), "ticktext": order,
            "range": [-0.5, len(order) - 0.5] if len(order) == 1 else [0, len(order) - 1]}  # fmt: skip


def parallel_coordinates(
    runs: RunsLike, metric: str, params: Sequence[str] | None = None, ws: Workspace | None = None
) -> go.Figure:
    """One axis per param plus the metric, one line per run colored by the metric.

    Without `params`, every param that differs between the runs is shown (the same params that
    label the runs elsewhere); runs without a value for the metric are left out (their line would
    have no end to color).
    """
    go = plotly_go()
    frame = runs_frame(runs, ws)
    m_col = resolve(frame, metric, "metrics.", "metric")
    columns = [resolve(frame, p, "params.", "param") for p in params] if params is not None else varying_params(frame)
    values = metric_values(frame, m_col)
    frame, values = frame[values.notna()].reset_index(drop=True), values[values.notna()].reset_index(drop=True)
    if frame.empty:
        raise ValidationError(f"No run has a value for metric {bare(m_col)!r}.")
    dimensions = [_dimension(frame[c], bare(c)) for c in columns]
    dimensions.append({"label": bare(m_col), "values": values.tolist()})
    line = {"color": values.tolist(), "colorscale": "Viridis", "showscale": True,
            "colorbar": {"title": bare(m_col)}}  # fmt: skip
    fig = go.Figure(go.Parcoords(line=line, dimensions=dimensions))
    fig.update_layout(title=f"{bare(m_col)} across parameters ({len(frame)} runs)", template="plotly_white")
    return fig


def step_curves(
    runs: RunsLike, metric: str, ws: Workspace | None = None, *, labels: Mapping[str, str] | None = None
) -> go.Figure:
    """Every logged step of a metric, one line per run (named by its label), to compare learning curves.

    Up to `MANY_CURVES` runs, each run is a trace of its own (lines and markers, in the legend).
    Beyond that the lines are plain and the legend is hidden, and the runs share
    `CURVE_COLOURS` traces, one per colour: run i is in trace i % CURVE_COLOURS (the colour it
    would have had as trace i), its line cut from the next run's by a gap, each point carrying the
    run's label and id for the hover text. The same lines in the same colours: a thousand traces
    took seconds to build, send and draw.
    """
    go = plotly_go()
    frame = runs_frame(runs, ws)
    m_col = resolve(frame, metric, "metrics.", "metric")
    history = metric_history(list(frame["run_id"]), bare(m_col), ws).sort_values(["run_id", "step"])
    # one pass over the history in plain Python (a pandas filter per run took seconds for 1,000 runs)
    curves: dict[str, tuple[list[Any], list[Any]]] = {}
    for run_id, step, value in zip(history["run_id"].tolist(), history["step"].tolist(), history["value"].tolist(),
                                   strict=True):  # fmt: skip
        steps, values = curves.setdefault(str(run_id), ([], []))
        steps.append(step)
        values.append(value)
    label = bare(m_col)
    names = labels if labels is not None else run_labels(frame)
    drawn = [run_id for run_id in frame["run_id"] if run_id in curves]
    layout = {"title": f"{label} by step", "xaxis": {"title": "step"}, "yaxis": {"title": label},
              "template": "plotly_white", "legend": {"title": "run"}}  # fmt: skip
    if len(drawn) <= MANY_CURVES:
        # plain dicts: the Figure validates each once (Scatter objects get validated, then copied); the
        # label comes from the trace's name, never pasted into the template (it is user text)
        hover = f"%{{fullData.name}}<br>run %{{meta}}<br>step %{{x}}<br>{label}=%{{y}}<extra></extra>"
        traces = [{"type": "scatter", "x": curves[run_id][0], "y": curves[run_id][1], "mode": "lines+markers",
                   "name": names[run_id], "meta": run_id, "hovertemplate": hover} for run_id in drawn]  # fmt: skip
        return go.Figure(data=traces, layout={**layout, "showlegend": True})
    # many runs: one trace per colour, the runs' lines separated by gaps (None), in run order
    shared: list[dict[str, list[Any]]] = [{"x": [], "y": [], "text": [], "customdata": []}
                                          for _ in range(CURVE_COLOURS)]  # fmt: skip
    for index, run_id in enumerate(drawn):
        trace = shared[index % CURVE_COLOURS]
        steps, values = curves[run_id]
        if trace["x"]:
            for column in trace.values():
                column.append(None)
        trace["x"] += steps
        trace["y"] += values
        trace["text"] += [names[run_id]] * len(steps)
        trace["customdata"] += [run_id] * len(steps)
    hover = f"%{{text}}<br>run %{{customdata}}<br>step %{{x}}<br>{label}=%{{y}}<extra></extra>"
    traces = [{"type": "scatter", "mode": "lines", "name": label, "hovertemplate": hover, **columns}
              for columns in shared if columns["x"]]  # fmt: skip
    return go.Figure(data=traces, layout={**layout, "showlegend": False})


def metric_bars(
    runs: RunsLike,
    metric: str,
    ascending: bool = True,
    ws: Workspace | None = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """The metric's last value per run, one row per run (its label), the best run on top: a dot plot.

    Sorted ascending by default (for losses; `ascending=False` for scores). The value axis spans
    the values with a small margin rather than starting at 0, so that 0.98 against 1.0 is plain
    to see (dots, not bars: a bar's length would suggest a zero baseline). Runs without the
    metric are left out rather than drawn as zero.
    """
    go = plotly_go()
    frame = runs_frame(runs, ws)
    m_col = resolve(frame, metric, "metrics.", "metric")
    names = labels if labels is not None else run_labels(frame)
    data = pd.DataFrame({"run_id": frame["run_id"], "value": metric_values(frame, m_col)}).dropna()
    data = data.sort_values(["value", "run_id"], ascending=[ascending, True])
    data["label"] = data["run_id"].map(names)
    name = bare(m_col)
    with_text = len(data) <= VALUE_TEXTS
    fig = go.Figure(go.Scatter(
        x=data["value"].tolist(), y=data["label"].tolist(), customdata=data["run_id"].tolist(), name=name,
        mode="markers+text" if with_text else "markers", marker={"size": 11 if with_text else 7},
        text=[f"{v:.4g}" for v in data["value"]] if with_text else None, textposition="middle right",
        hovertemplate=f"%{{y}}<br>run %{{customdata}}<br>{name}=%{{x}}<extra></extra>",
    ))  # fmt: skip
    xaxis: dict[str, Any] = {"title": name}
    if len(data):
        xaxis["range"] = value_range(data["value"].tolist(), (0.08, 0.2 if with_text else 0.08))  # room for texts
    fig.update_layout(title=f"{name} by run", template="plotly_white", xaxis=xaxis, showlegend=False,
                      yaxis={"type": "category", "categoryorder": "array", "categoryarray": data["label"].tolist(),
                             "autorange": "reversed", "automargin": True})  # fmt: skip
    return fig

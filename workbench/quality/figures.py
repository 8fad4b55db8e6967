"""Plotly figures of live quality over time (`LiveQuality.figures`).

Plain `plotly.graph_objects.Figure`s on the "plotly_white" template like the run comparisons
(`compare.figures`), so the same objects serve JupyterLab, the exported HTML report and the lab's
front end (`fig.to_json()`). Each version keeps its colour in every figure; a shadow version's line
is dashed, and shadows are left out of the traffic split (they answer nobody).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.compare.figures import plotly_go
from workbench.serving.monitor import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from workbench.quality.live import LiveQuality

#: Axis titles of the measures drawn.
TITLES = {"latency_p95": "latency p95 (ms)", "accuracy": "accuracy", "f1": "macro F1", "log_loss": "log loss",
          "mae": "MAE", "rmse": "RMSE", "psi": "prediction PSI"}  # fmt: skip


def live_figures(report: LiveQuality) -> dict[str, go.Figure]:
    """ "traffic", "latency_p95", the task's metrics and "psi", in that order."""
    colours = _colours(report.table)
    figures = {"traffic": traffic(report, colours)}
    for measure in ("latency_p95", *report.metrics, "psi"):
        figures[measure] = over_time(report, measure, colours)
    figures["psi"].add_hline(y=DEFAULT_THRESHOLD, line_dash="dot", line_color="grey",
                             annotation_text=f"significant shift ({DEFAULT_THRESHOLD})")  # fmt: skip
    return figures


def _colours(table: pd.DataFrame) -> dict[int, str]:
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly
    return {int(v): palette[i % len(palette)] for i, v in enumerate(sorted(table["version"].unique()))}


def _layout(report: LiveQuality, title: str, yaxis: str) -> dict[str, Any]:
    return {"title": f"{title} of {report.model} per {report.window}", "template": "plotly_white",
            "xaxis_title": "window start (UTC)", "yaxis_title": yaxis, "legend": {"title": "version"}}  # fmt: skip


def traffic(report: LiveQuality, colours: dict[int, str]) -> go.Figure:
    """Requests answered per window, stacked by the version that answered them (the canary split)."""
    go = plotly_go()
    served = report.table[~report.table["shadow"]]
    fig = go.Figure([go.Bar(x=rows["start"], y=rows["requests"], name=f"v{version}", marker_color=colours[version],
                            customdata=rows["rows"], hovertemplate="%{y} requests, %{customdata} rows")
                     for version, rows in served.groupby("version")])  # fmt: skip
    fig.update_layout(barmode="stack", **_layout(report, "Traffic", "requests"))
    return fig


def over_time(report: LiveQuality, measure: str, colours: dict[int, str]) -> go.Figure:
    """One line per version (and per shadow version) of `measure` over the windows; hover gives the
    window's outcome count, which says how much a metric's wiggle means."""
    go = plotly_go()
    fig = go.Figure()
    for (version, shadow), rows in report.table.groupby(["version", "shadow"]):
        rows = rows[rows[measure].notna()]
        if rows.empty:
            continue
        fig.add_trace(go.Scatter(x=rows["start"], y=rows[measure], mode="lines+markers",
                                 name=f"v{version} (shadow)" if shadow else f"v{version}",
                                 line={"color": colours[int(version)], "dash": "dash" if shadow else "solid"},
                                 customdata=rows["outcomes"],
                                 hovertemplate="%{y:.4g} (%{customdata} outcomes)"))  # fmt: skip
    fig.update_layout(**_layout(report, TITLES.get(measure, measure), TITLES.get(measure, measure)))
    return fig

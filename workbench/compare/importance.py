"""Which params go with a metric: rank correlation / correlation ratio per param, as a table or chart."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.compare.figures import plotly_go
from workbench.compare.frame import RunsLike, bare, metric_values, numeric, resolve, runs_frame, text
from workbench.errors import ValidationError
from workbench.workspace import Workspace

if TYPE_CHECKING:
    import plotly.graph_objects as go


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
    m_col = resolve(frame, metric, "metrics.", "metric")
    columns = [resolve(frame, p, "params.", "param") for p in params] if params is not None else [
        c for c in frame.columns if c.startswith("params.")]  # fmt: skip
    y_all = metric_values(frame, m_col)
    rows = []
    for column in columns:
        values = numeric(frame[column])
        if values is not None:
            mask = y_all.notna() & values.notna()
            score, method = _spearman(values[mask], y_all[mask]), "spearman"
        else:
            mask = y_all.notna()
            labels = frame.loc[mask, column].map(text)
            score, method = _correlation_ratio(labels, y_all[mask]), "correlation ratio"
            if labels.nunique() < 2:
                score = float("nan")
        if math.isnan(score):
            continue
        importance = round(abs(score), 12)  # float noise: a param unrelated to the metric shows 0, not 1e-16
        rows.append({"param": bare(column), "importance": importance, "method": method, "n_runs": int(mask.sum())})
    table = pd.DataFrame(rows, columns=["param", "importance", "method", "n_runs"])
    return table.sort_values(["importance", "param"], ascending=[False, True]).reset_index(drop=True)


def param_importance(
    runs: RunsLike, metric: str, params: Sequence[str] | None = None, ws: Workspace | None = None
) -> go.Figure:
    """`param_importance_table` as a horizontal bar chart, the most related param on top.

    Its axis is the score's own scale, 0 (unrelated) to 1 (perfectly related).
    """
    go = plotly_go()
    table = param_importance_table(runs, metric, params, ws)
    if table.empty:
        raise ValidationError(
            f"No param varies among the runs with metric {bare(metric)!r}, so there is nothing to rank.",
            "Compare runs with different parameter values (e.g. the runs of a sweep).",
        )
    ordered = table.iloc[::-1]
    fig = go.Figure(go.Bar(x=ordered["importance"].tolist(), y=ordered["param"].tolist(), orientation="h",
                           customdata=ordered[["method", "n_runs"]].values.tolist(),
                           hovertemplate="%{y}: %{x:.3f}<br>%{customdata[0]} over %{customdata[1]} runs"
                           "<extra></extra>"))  # fmt: skip
    fig.update_layout(title=f"Parameter importance for {bare(metric)}", template="plotly_white",
                      xaxis={"title": "|Spearman rho| / correlation ratio", "range": [0, 1]},
                      yaxis={"title": "param", "type": "category"})  # fmt: skip
    return fig

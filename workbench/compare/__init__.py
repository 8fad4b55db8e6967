"""Comparing runs: plotly figures over many runs and a side-by-side diff report.

Every function takes the runs to compare in whatever form the user has at hand: the DataFrame
returned by `wb.runs(...)` (so filtering happens once, in SQL), or a list of run ids / `Run`
objects (then the runs are read from the catalog in one query). All figures are plain
`plotly.graph_objects.Figure` objects, so the same code serves JupyterLab, exported HTML and the
JavaScript front end (via `fig.to_json()`).

Runs are labelled by the params that differ between them (`lr=0.1, depth=3`), with the run id in
hover texts. Parameters are either numeric (plotted on a numeric axis, ranked for correlations)
or categorical (anything else, including booleans, lists and dicts, compared by their text
form). Metric and parameter names may be given bare (`"rmse"`) or prefixed (`"metrics.rmse"`).

Modules: `frame` (the runs as one DataFrame, names, values, run labels), `figures` (the charts),
`importance` (which params go with a metric), `report` (`compare()` and its `Comparison`).
"""

from __future__ import annotations

from workbench.compare.figures import MANY_CURVES, metric_bars, metric_vs_param, parallel_coordinates, step_curves
from workbench.compare.frame import MISSING_LABEL, RunsLike, run_labels, runs_frame
from workbench.compare.importance import param_importance, param_importance_table
from workbench.compare.report import MAX_SCATTERS, TABLE_CSS, Comparison, compare, default_metric, diff_table

__all__ = [
    "MANY_CURVES",
    "MAX_SCATTERS",
    "MISSING_LABEL",
    "TABLE_CSS",
    "Comparison",
    "RunsLike",
    "compare",
    "default_metric",
    "diff_table",
    "metric_bars",
    "metric_vs_param",
    "parallel_coordinates",
    "param_importance",
    "param_importance_table",
    "run_labels",
    "runs_frame",
    "step_curves",
]

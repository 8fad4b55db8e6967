"""Runs side by side: `compare()`, its diff table and the `Comparison` it returns (notebook
display, standalone HTML report). The table comes first, the figures after it."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.compare.figures import metric_bars, metric_vs_param, parallel_coordinates, step_curves
from workbench.compare.frame import (
    RunsLike,
    bare,
    is_missing,
    known,
    metric_values,
    ordered_columns,
    resolve,
    run_labels,
    runs_frame,
    text,
    varying_params,
)
from workbench.compare.importance import param_importance, param_importance_table
from workbench.errors import ValidationError
from workbench.workspace import Workspace

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: At most this many "metric vs param" scatter plots in a comparison (the most important params).
MAX_SCATTERS = 4


def diff_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows params.*, metrics.*, tags.*; a column per run; `differs` when the runs disagree.

    A key that one run has and another lacks counts as a difference.
    """
    keys = [c for c in ordered_columns(list(frame.columns)) if c.startswith(("params.", "metrics.", "tags."))]
    # row by row in plain Python: pandas' transpose, map and where over one column per run took
    # tens of milliseconds for 1,000 runs
    rows = [[None if is_missing(value) else value for value in frame[key].tolist()] for key in keys]
    differs = [len({text(value) for value in row}) > 1 for row in rows]
    body = pd.DataFrame(rows, index=pd.Index(keys, name="key"), columns=list(frame["run_id"]), dtype=object)
    body["differs"] = pd.Series(differs, index=body.index, dtype=bool)
    return body


def default_metric(frame: pd.DataFrame, points: dict[str, int]) -> str | None:
    """The metric a comparison most likely is about: one with a step history (more than one point
    in some run) if there is one; then the one most runs have; then alphabetical."""
    counts = {name: int(frame[f"metrics.{name}"].notna().sum()) for name in known(frame, "metrics.")}
    if not counts:
        return None
    return min(counts, key=lambda name: (points.get(name, 0) <= 1, -counts[name], name))


def _cell(value: Any) -> str:
    if is_missing(value):
        return '<span class="wb-missing">—</span>'
    if isinstance(value, (float, np.floating)):
        return html.escape(f"{float(value):.6g}")
    return html.escape(text(value))


# JupyterLab's theme colours where there are some (a notebook in the dark theme), else a light
# table (a standalone report). The first column stays in view while the table scrolls sideways
# inside its own box.
TABLE_CSS = """
.wb-compare { font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", sans-serif; font-size: 13px;
  --wb-c-bg: var(--jp-layout-color0, #fff); --wb-c-fg: var(--jp-ui-font-color0, #1a1a1a);
  --wb-c-line: var(--jp-border-color2, #ddd); --wb-c-head: var(--jp-layout-color2, #f0f0f0);
  --wb-c-differs: color-mix(in srgb, var(--jp-warn-color1, #f0ad4e) 25%, var(--wb-c-bg)); }
.wb-compare-table { overflow-x: auto; max-width: 100%; margin: 8px 0; border: 1px solid var(--wb-c-line); }
.wb-compare table { border-collapse: separate; border-spacing: 0; margin: 0; }
.wb-compare th, .wb-compare td { border: 0; border-bottom: 1px solid var(--wb-c-line); padding: 3px 8px;
  text-align: left; white-space: nowrap; background: var(--wb-c-bg); color: var(--wb-c-fg); }
.wb-compare thead th { background: var(--wb-c-head); font-weight: 600; }
.wb-compare tbody th, .wb-compare thead th:first-child { position: sticky; left: 0; z-index: 1;
  font-weight: 600; border-right: 1px solid var(--wb-c-line); }
.wb-compare thead th:first-child { z-index: 2; }
.wb-compare tr.wb-differs td, .wb-compare tr.wb-differs th { background: var(--wb-c-differs); }
.wb-compare .wb-missing { color: var(--jp-ui-font-color2, #6b6b6b); }
"""


class Comparison:
    """Runs side by side: `.table` (params/metrics/tags x runs, plus `differs`) and `.figures`.

    `.labels` names each run by the params that differ between the runs (`lr=0.1, depth=3`), as
    the figures and the table's header do. Displays itself in a notebook (table first, then the
    figures) and writes a standalone HTML report with `.to_html(path)`.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        metric: str | None,
        figures: dict[str, go.Figure],
        labels: dict[str, str] | None = None,
    ) -> None:
        self.runs = frame
        self.metric = metric
        self.table = diff_table(frame)
        self.figures = figures
        self.labels = labels if labels is not None else run_labels(frame)

    @property
    def run_ids(self) -> list[str]:
        return list(self.runs["run_id"])

    @property
    def differences(self) -> pd.DataFrame:
        """Only the rows where the runs disagree."""
        return self.table[self.table["differs"]]

    def table_html(self) -> str:
        """The diff table as HTML, differing rows highlighted (escaped: values are user text).

        Columns are headed by the runs' labels; each run id is in its header's tooltip.
        """
        head = "".join(f'<th title="run {html.escape(r)}">{html.escape(self.labels[r])}</th>' for r in self.run_ids)
        rows = []
        for key, row in self.table.iterrows():
            css = ' class="wb-differs"' if row["differs"] else ""
            cells = "".join(f"<td>{_cell(row[r])}</td>" for r in self.run_ids)
            rows.append(f"<tr{css}><th>{html.escape(str(key))}</th>{cells}</tr>")
        if not rows:
            rows.append(f'<tr><td colspan="{len(self.run_ids) + 1}">No params, metrics or tags recorded.</td></tr>')
        table = f"<table><thead><tr><th>key</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        return f'<div class="wb-compare-table">{table}</div>'

    def _summary(self) -> str:
        n_diff = int(self.table["differs"].sum())
        varying = [bare(c) for c in varying_params(self.runs)]
        differ = f" They differ in {html.escape(', '.join(varying))}." if varying else ""
        metric = f" Figures for metric <b>{html.escape(self.metric)}</b>." if self.metric else ""
        counts = f"{n_diff} of {len(self.table)} params/metrics/tags differ (highlighted)."
        return f"<h2>Comparing {len(self.run_ids)} runs</h2><p>{counts}{differ}{metric}</p>"

    def _header(self) -> str:
        return f'<div class="wb-compare"><style>{TABLE_CSS}</style>{self._summary()}{self.table_html()}</div>'

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
        bundles: list[dict[str, Any]] = [{"text/html": self._header(), "text/plain": repr(self)}]
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
        shown = [self.labels[r] for r in self.run_ids[:5]]
        title = html.escape(f"Workbench run comparison: {'; '.join(shown)}" + (" ..." if len(self.run_ids) > 5 else ""))
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

    Without `metric`, a metric with a step history is used if there is one (else the one most
    runs logged). Figures that need something the runs lack (a varying param, a second run, more
    than one step of the metric) are simply not included.
    """
    from workbench.runs.query import metric_point_counts

    frame = runs_frame(runs, ws)
    points = metric_point_counts(frame["run_id"].tolist(), ws)
    column = resolve(frame, metric, "metrics.", "metric") if metric is not None else None
    name = bare(column) if column else default_metric(frame, points)
    figures: dict[str, go.Figure] = {}
    labels = run_labels(frame)  # worked out once for the table and every figure
    if name is not None:
        figures["metric_bars"] = metric_bars(frame, name, ws=ws, labels=labels)
        if points.get(name, 0) > 1:  # a "curve" of one point per run says nothing the dots do not
            figures["step_curves"] = step_curves(frame, name, ws=ws, labels=labels)
        varying = varying_params(frame[metric_values(frame, f"metrics.{name}").notna()])
        if varying:
            importance = param_importance_table(frame, name, [bare(c) for c in varying], ws=ws)
            if not importance.empty:
                figures["param_importance"] = param_importance(frame, name, list(importance["param"]), ws=ws)
            figures["parallel_coordinates"] = parallel_coordinates(frame, name, [bare(c) for c in varying], ws=ws)
            ranked = list(importance["param"])
            ranked += [bare(c) for c in varying if bare(c) not in ranked]
            for param in ranked[:MAX_SCATTERS]:
                figures[f"metric_vs_{param}"] = metric_vs_param(frame, name, param, ws=ws, labels=labels)
    return Comparison(frame, name, figures, labels)

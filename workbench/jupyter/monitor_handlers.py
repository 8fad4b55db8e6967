"""REST handler of the lab's Monitor view: live quality, drift and A/B verdicts of one served model.

`GET workbench/api/models/<name>/monitor?window=1h&since=7d` answers everything the view draws in one
request (it polls every ~10 s while open), as JSON:

- the live-quality report, `quality.live.LiveQuality.to_dict()` spread at the top level: `model`,
  `window`, `since` (ISO or null), `task` ("classification" | "regression"), `metrics` (the task's
  metric names), `counts` ({outcomes, matched, duplicates, unknown, pending}), `errors_logged`, and
  `rows`: one per (version, shadow, window start) with `start` (ISO), requests, rows, errors,
  latency_p50/p95/p99, outcomes, the task's metrics and `psi` (null where unknown);
- `figures`: plotly figures as JSON (`fig.to_json()`, like the Compare view's): "traffic",
  "latency_p95", each task metric and "psi" over time (`LiveQuality.figures()`), and "drift" (the input
  drift per column, `DriftReport.figure()`) when there is a drift report. Only figures that have data;
- `drift`: `serving.monitor.drift_report(name).to_dict()` over the same `since` ({model, version,
  reference, live_rows, threshold, drifted, columns}), or `{"error", "hint"}` when there is none to
  make (no prediction logged yet, no training snapshot in the model's lineage): a state to show, not a
  failure of the request;
- `ab`: `quality.live.ab_summary`: `quality.abtest.ab_report(joined rows).to_dict()` ({baseline, task,
  alpha, results: one
  `ABResult.to_dict()` per (other version, metric): a, b, n_a, n_b, value_a, value_b, diff (positive =
  b better), ci_low, ci_high, p_value, test, needed_n, verdict, reason, paired, ...}) when at least two
  versions have outcomes, else null.

`since` is a span back from now ("7d", "12h") or "all". A mistake in `window`/`since`, or an unknown
model, is a 400/404 `{"error", "hint"}` the view shows in its message line.
"""

from __future__ import annotations

import json
from typing import Any

import tornado.web

from workbench.errors import ValidationError, WorkbenchError
from workbench.jupyter.base import WorkbenchHandler, error_body, guarded, through_server
from workbench.workspace import Workspace

#: Longest `window`/`since` accepted (they are short spans such as "15m" or "30d").
MAX_SPAN_CHARS = 32


class MonitorHandler(WorkbenchHandler):
    """GET models/<name>/monitor?window=1h&since=7d: live quality, drift and A/B verdicts (module doc)."""

    @tornado.web.authenticated
    @guarded
    async def get(self, name: str) -> None:
        window = self.span_argument("window", "1h")
        since = self.span_argument("since", "7d")
        # imported here, not with the module: pandas and plotly would slow every lab's start-up
        from workbench.quality.live import ab_summary, live_quality
        from workbench.serving.monitor import drift_report

        state = through_server(live_quality, drift_report, ab_summary)(monitor_state)  # what a team server lacks, named
        self.reply(await self.call(state, name, window, None if since == "all" else since))

    def span_argument(self, name: str, default: str) -> str:
        """A short query argument (`window`, `since`), checked for length here and for meaning by the library."""
        text = (self.get_query_argument(name, None) or default).strip()
        if len(text) > MAX_SPAN_CHARS:
            raise ValidationError(f"{name} is too long ({len(text)} characters).", "Use a span such as 1h or 7d.")
        return text


def monitor_state(name: str, window: str, since: str | None, ws: Workspace | None) -> dict[str, Any]:
    """What the Monitor view shows (the module doc describes the shape)."""
    from workbench.quality.live import ab_summary, live_quality
    from workbench.quality.metrics import parse_span

    parse_span(window, "window")  # named as the view names it (the library says "--window")
    quality = live_quality(name, window, since, ws=ws)
    figures = {key: fig for key, fig in quality.figures().items() if fig.data}
    start = quality.since.isoformat() if quality.since is not None else None
    drift = _drift(name, start, ws)
    if "error" not in drift:
        figures["drift"] = drift.pop("figure")
    return {**quality.to_dict(), "figures": {key: json.loads(fig.to_json()) for key, fig in figures.items()},
            "drift": drift, "ab": ab_summary(name, start, ws=ws)}  # fmt: skip


def _drift(name: str, since: str | None, ws: Workspace | None) -> dict[str, Any]:
    """The drift report with its figure, or why there is none (no predictions yet, no training data)."""
    from workbench.serving.monitor import drift_report

    try:
        report = drift_report(name, since=since, ws=ws)
    except WorkbenchError as exc:
        return error_body(exc)
    return {**report.to_dict(), "figure": report.figure()}

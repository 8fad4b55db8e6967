"""`RunTable`: a live, filterable table of runs in a notebook, with a "Compare" button.

The filter box takes the same language as `wb.runs(filter=...)` and `workbench runs list`, so
what users learn in one place works in the others. While any shown run is queued or running, a
background thread refreshes the table every `refresh_seconds` and stops once they have all
ended, so an idle table costs nothing.
"""

from __future__ import annotations

import html
import math
import threading
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.workspace import Workspace

ACTIVE_STATUSES = ("queued", "running")
#: Run columns offered for sorting (the query language's names), before params/metrics/tags.
SORT_COLUMNS = ["created_at", "duration", "status", "experiment", "run_id"]
#: Columns shown before params/metrics (tags and inputs stay out to keep rows short).
SHOWN_COLUMNS = ["run_id", "experiment", "status", "created_at", "duration_s"]
STATUS_COLORS = {"finished": "#1a7f37", "failed": "#cf222e", "killed": "#9a6700", "running": "#0969da",
                 "queued": "#6e7781"}  # fmt: skip
TABLE_STYLE = (
    "<style>.wb-runs{border-collapse:collapse;font-size:12px}"
    ".wb-runs th,.wb-runs td{border:1px solid #ddd;padding:2px 6px;text-align:left;white-space:nowrap}"
    ".wb-runs th{background:#f5f5f5}</style>"
)


def error_html(error: BaseException) -> str:
    """A WorkbenchError as one red line (message and hint), the way every shell shows them."""
    return f'<span style="color:#cf222e">{html.escape(str(error))}</span>'


def format_value(value: Any) -> str:
    """Cell text: short floats, a dash for missing, escaped (values come from user notebooks)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "—"
    if isinstance(value, float):
        return html.escape(f"{value:.6g}")
    if isinstance(value, pd.Timestamp):
        return html.escape(value.strftime("%Y-%m-%d %H:%M:%S"))
    return html.escape(str(value))


def status_html(status: str) -> str:
    color = STATUS_COLORS.get(status, "#000")
    return f'<span style="color:{color};font-weight:600">{html.escape(status)}</span>'


def html_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """Rows of `frame` as an HTML table; column headers drop the params./metrics. prefix."""
    if frame.empty:
        return "<i>No runs.</i>"
    head = "".join(f"<th title='{html.escape(c)}'>{html.escape(c.split('.', 1)[-1])}</th>" for c in columns)
    body = []
    for _, row in frame.iterrows():
        cells = "".join(
            f"<td>{status_html(row[c]) if c == 'status' else format_value(row.get(c))}</td>" for c in columns
        )
        body.append(f"<tr>{cells}</tr>")
    return f"{TABLE_STYLE}<table class='wb-runs'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def display_columns(frame: pd.DataFrame) -> list[str]:
    prefixed = [c for c in frame.columns if c.startswith(("params.", "metrics."))]
    return [c for c in SHOWN_COLUMNS if c in frame.columns] + prefixed


class RunTable(widgets.VBox):
    """Runs matching a filter, sortable, auto-refreshing while runs are active; select some
    and press "Compare" to see `wb.compare` of them below.

    Tests and scripts drive it through the exposed widgets (`filter_box`, `sort`, `descending`,
    `limit`, `selector`, `metric`, `compare_button`) and call `.refresh()` directly.
    """

    def __init__(
        self,
        experiment: str | list[str] | None = None,
        filter: str | None = None,
        refresh_seconds: float = 2.0,
        limit: int = 100,
        ws: Workspace | None = None,
    ) -> None:
        self.experiment = experiment
        self.refresh_seconds = refresh_seconds
        self.ws = ws
        self.frame = pd.DataFrame()
        self.comparison: Any = None  # the last Comparison shown, for scripts and tests
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.filter_box = widgets.Text(value=filter or "", description="filter", continuous_update=False,
                                       placeholder="metrics.rmse < 0.3 and params.depth >= 5",
                                       layout=widgets.Layout(width="60%"))  # fmt: skip
        self.sort = widgets.Dropdown(options=SORT_COLUMNS, value="created_at", description="sort by")
        self.descending = widgets.Checkbox(value=True, description="descending", indent=False)
        self.limit = widgets.BoundedIntText(value=limit, min=1, max=100_000, description="limit",
                                            layout=widgets.Layout(width="160px"))  # fmt: skip
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.message = widgets.HTML()
        self.table = widgets.HTML()
        self.selector = widgets.SelectMultiple(options=[], description="runs", rows=6,
                                               layout=widgets.Layout(width="60%"))  # fmt: skip
        self.metric = widgets.Dropdown(options=[], description="metric")
        self.compare_button = widgets.Button(description="Compare", button_style="primary")
        self.output = widgets.Output()
        self._redrawing = False
        for control in (self.filter_box, self.sort, self.descending, self.limit):
            control.observe(self._on_control, names="value")
        self.refresh_button.on_click(lambda _button: self.refresh())
        self.compare_button.on_click(lambda _button: self.show_comparison())
        super().__init__([
            widgets.HBox([self.filter_box, self.refresh_button]),
            widgets.HBox([self.sort, self.descending, self.limit]),
            self.message, self.table,
            widgets.HBox([self.selector, widgets.VBox([self.metric, self.compare_button])]),
            self.output,
        ])  # fmt: skip
        self.refresh()

    @property
    def selected(self) -> list[str]:
        """Run ids ticked in the selector, in table order."""
        return list(self.selector.value)

    @property
    def active(self) -> bool:
        """Whether any shown run may still change (so the table should keep refreshing)."""
        return not self.frame.empty and bool(self.frame["status"].isin(ACTIVE_STATUSES).any())

    def refresh(self) -> pd.DataFrame:
        """Query the runs again and redraw; a bad filter shows a red message instead of raising."""
        self._reload()
        self._keep_refreshing()
        return self.frame

    def _on_control(self, _change: Any) -> None:
        if not self._redrawing:
            self.refresh()

    def _reload(self) -> None:
        from workbench.runs.query import runs

        with self._lock:
            order = f"{self.sort.value} {'desc' if self.descending.value else 'asc'}"
            try:
                frame = runs(self.experiment, filter=self.filter_box.value.strip() or None, order_by=order,
                             limit=self.limit.value, ws=self.ws)  # fmt: skip
            except WorkbenchError as error:
                self.message.value = error_html(error)
                return
            self.message.value = ""
            self.frame = frame
            self._redrawing = True
            try:
                self._redraw()
            finally:
                self._redrawing = False

    def _redraw(self) -> None:
        frame = self.frame
        self.table.value = html_table(frame, display_columns(frame))
        ids = list(frame["run_id"]) if not frame.empty else []
        kept = tuple(r for r in self.selector.value if r in ids)
        labels = [f"{row.run_id}  {row.experiment}  {row.status}" for row in frame.itertuples()] if ids else []
        self.selector.options = list(zip(labels, ids, strict=True))
        self.selector.value = kept
        # Offer the keys of the runs at hand, keeping the current choice even if no shown run has it.
        sortable = SORT_COLUMNS + [c for c in frame.columns if c.startswith(("params.", "metrics.", "tags."))]
        if self.sort.value not in sortable:
            sortable.append(self.sort.value)
        if list(self.sort.options) != sortable:
            current = self.sort.value
            self.sort.options = sortable
            self.sort.value = current
        metrics = [c[len("metrics.") :] for c in frame.columns if c.startswith("metrics.")]
        if list(self.metric.options) != metrics:
            current_metric = self.metric.value
            self.metric.options = metrics
            self.metric.value = current_metric if current_metric in metrics else (metrics[0] if metrics else None)

    def _keep_refreshing(self) -> None:
        """Start the auto-refresh thread when runs are active and none is running yet."""
        if not self.active or self.refresh_seconds <= 0:
            return
        if self._poller is not None and self._poller.is_alive():
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, name="workbench-runtable", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self._reload()
            except Exception as error:  # a background thread has nobody to raise to: show it
                self.message.value = error_html(error)
                return
            if not self.active:
                return

    def stop(self) -> None:
        """Stop auto-refreshing (e.g. before closing the notebook)."""
        self._stop.set()

    def show_comparison(self) -> None:
        """Display `compare(selected, metric)` in the output area, or say what is missing.

        The output is set directly (not via `with output: display(...)`), which works the same
        in a kernel, in a thread and in tests without one; figures go as plotly's mimetype so
        each click does not resend plotly.js.
        """
        from workbench.compare import compare

        self.output.outputs = ()
        if not self.selected:
            self.message.value = error_html(WorkbenchError("Select at least one run to compare."))
            return
        try:
            result = compare(self.selected, self.metric.value or None, ws=self.ws)
        except WorkbenchError as error:
            self.message.value = error_html(error)
            return
        self.message.value = ""
        self.comparison = result
        self.output.outputs = tuple(
            {"output_type": "display_data", "data": bundle, "metadata": {}} for bundle in result.mimebundles()
        )

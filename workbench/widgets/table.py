"""`RunTable`: a live, filterable table of runs in a notebook, with a checkbox per row and "Compare".

The filter box takes the same language as `wb.runs(filter=...)` and `workbench runs list`, so
what users learn in one place works in the others. While any shown run is queued or running, a
background thread refreshes the table every `refresh_seconds` and stops once they have all
ended, so an idle table costs nothing.

The rows are one HTML table (a widget per cell would be thousands of widgets for a few hundred
runs); the checkboxes are a column of real checkboxes beside it, one per row, each exactly one
table row high so it sits on its row. They are kept per run id across refreshes, so what is ticked
stays ticked while the table redraws.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.widgets.theme import ROW_PX, error_html, format_value, html_table, note_html, status_html
from workbench.workspace import Workspace

ACTIVE_STATUSES = ("queued", "running")
#: Run columns offered for sorting (the query language's names), before params/metrics/tags.
SORT_COLUMNS = ["created_at", "duration", "status", "experiment", "run_id"]
#: Columns shown before params/metrics (tags and inputs stay out to keep rows short).
SHOWN_COLUMNS = ["run_id", "experiment", "status", "created_at", "duration_s"]
#: One description width for the first control of every row, so their inputs line up.
CONTROL_STYLE = {"description_width": "4.5em"}


def display_columns(frame: pd.DataFrame) -> list[str]:
    """The run columns worth a glance, then every param and metric."""
    prefixed = [c for c in frame.columns if c.startswith(("params.", "metrics."))]
    return [c for c in SHOWN_COLUMNS if c in frame.columns] + prefixed


def tick_box(tooltip: str) -> widgets.Checkbox:
    """A bare checkbox exactly one table row high, with no margin, so a column of them lines up with the rows."""
    return widgets.Checkbox(value=False, indent=False, tooltip=tooltip,
                            layout=widgets.Layout(width=f"{ROW_PX}px", height=f"{ROW_PX}px", margin="0"))  # fmt: skip


class RunTable(widgets.VBox):
    """Runs matching a filter, sortable, auto-refreshing while runs are active; tick the rows of
    some runs and press "Compare" to see `wb.compare` of them below.

    Tests and scripts drive it through the exposed widgets (`filter_box`, `sort`, `descending`,
    `limit`, `checkboxes[run_id]`, `select_all`, `metric`, `compare_button`), `select(run_ids)`
    and `.refresh()`.
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
        self.checkboxes: dict[str, widgets.Checkbox] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._redrawing = False
        self._syncing = False
        self._build_controls(filter, limit)
        super().__init__([
            widgets.HBox([self.filter_box, self.refresh_button]),
            widgets.HBox([self.sort, self.descending, self.limit]),
            self.message,
            widgets.HBox([self.ticks, self.table], layout=widgets.Layout(align_items="flex-start", overflow="auto")),
            widgets.HBox([self.metric, self.compare_button, self.selection]),
            self.output,
        ])  # fmt: skip
        self.refresh()

    def _build_controls(self, filter: str | None, limit: int) -> None:
        """The widgets, wired up; the first control of each row shares `CONTROL_STYLE` so the inputs align."""
        self.filter_box = widgets.Text(value=filter or "", description="filter", continuous_update=False,
                                       placeholder="metrics.rmse < 0.3 and params.depth >= 5", style=CONTROL_STYLE,
                                       layout=widgets.Layout(width="60%"))  # fmt: skip
        self.sort = widgets.Dropdown(options=SORT_COLUMNS, value="created_at", description="sort by",
                                     style=CONTROL_STYLE)  # fmt: skip
        self.descending = widgets.Checkbox(value=True, description="descending", indent=False,
                                          layout=widgets.Layout(width="auto"))  # fmt: skip
        self.limit = widgets.BoundedIntText(value=limit, min=1, max=100_000, description="limit",
                                            style=CONTROL_STYLE, layout=widgets.Layout(width="160px"))  # fmt: skip
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.message = widgets.HTML()
        self.table = widgets.HTML(layout=widgets.Layout(margin="0"))
        self.select_all = tick_box("Tick every run shown")
        self.ticks = widgets.VBox([], layout=widgets.Layout(margin="0", overflow="visible", flex="0 0 auto"))
        self.metric = widgets.Dropdown(options=[], description="metric", style=CONTROL_STYLE)
        self.compare_button = widgets.Button(description="Compare", button_style="primary", icon="bar-chart")
        self.selection = widgets.HTML()
        self.output = widgets.Output()
        for control in (self.filter_box, self.sort, self.descending, self.limit):
            control.observe(self._on_control, names="value")
        self.select_all.observe(self._on_select_all, names="value")
        self.refresh_button.on_click(lambda _button: self.refresh())
        self.compare_button.on_click(lambda _button: self.show_comparison())

    # ----------------------------------------------------------------------------------------
    # Selection

    @property
    def shown_ids(self) -> list[str]:
        """Run ids of the rows on screen, in table order."""
        return [] if self.frame.empty else list(self.frame["run_id"])

    @property
    def selected(self) -> list[str]:
        """Run ids whose row is ticked, in table order."""
        return [run_id for run_id in self.shown_ids if run_id in self.checkboxes and self.checkboxes[run_id].value]

    def select(self, run_ids: list[str]) -> None:
        """Tick exactly these rows (ids not shown are ignored), as a user clicking them would."""
        wanted = set(run_ids)
        for run_id, box in list(self.checkboxes.items()):
            box.value = run_id in wanted

    def _on_tick(self, _change: Any) -> None:
        """A row was (un)ticked: the header box follows (ticked when every row is) and the count updates."""
        if self._syncing:
            return
        self._syncing = True
        try:
            shown = self.shown_ids
            self.select_all.value = bool(shown) and len(self.selected) == len(shown)
        finally:
            self._syncing = False
        self._show_selection()

    def _on_select_all(self, change: Any) -> None:
        """The header box ticks or clears every row shown."""
        if self._syncing:
            return
        self._syncing = True
        try:
            for run_id in self.shown_ids:
                if run_id in self.checkboxes:
                    self.checkboxes[run_id].value = bool(change["new"])
        finally:
            self._syncing = False
        self._show_selection()

    def _show_selection(self) -> None:
        count = len(self.selected)
        self.selection.value = note_html(f"{count} run{'s' if count != 1 else ''} ticked" if count else "")

    def _sync_checkboxes(self) -> None:
        """One checkbox per shown row (kept per run id, so ticks survive a refresh); rows gone take theirs along."""
        shown = self.shown_ids
        for run_id in [r for r in self.checkboxes if r not in set(shown)]:
            self.checkboxes.pop(run_id).close()
        for run_id in shown:
            if run_id not in self.checkboxes:
                box = tick_box(f"Tick {run_id} to compare it")
                box.observe(self._on_tick, names="value")
                self.checkboxes[run_id] = box
        self.ticks.children = [self.select_all, *(self.checkboxes[r] for r in shown)] if shown else []
        self._on_tick(None)

    # ----------------------------------------------------------------------------------------
    # Loading and drawing

    @property
    def active(self) -> bool:
        """Whether any shown run may still change (so the table should keep refreshing)."""
        return not self.frame.empty and bool(self.frame["status"].isin(ACTIVE_STATUSES).any())

    def refresh(self) -> pd.DataFrame:
        """Query the runs again and redraw; a bad filter shows an error line instead of raising."""
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
                self.message.value = error_html(error, "filter")
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
        self._sync_checkboxes()
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

    # ----------------------------------------------------------------------------------------
    # Compare

    def show_comparison(self) -> None:
        """Display `compare(selected, metric)` in the output area, or say what is missing.

        The output is set directly (not via `with output: display(...)`), which works the same
        in a kernel, in a thread and in tests without one; figures go as plotly's mimetype so
        each click does not resend plotly.js.
        """
        from workbench.compare import compare

        self.output.outputs = ()
        chosen = self.selected
        if not chosen:
            self.message.value = error_html(WorkbenchError("Tick at least one run to compare."))
            return
        try:
            result = compare(chosen, self.metric.value or None, ws=self.ws)
        except WorkbenchError as error:
            self.message.value = error_html(error)
            return
        self.message.value = ""
        self.comparison = result
        self.output.outputs = tuple(
            {"output_type": "display_data", "data": bundle, "metadata": {}} for bundle in result.mimebundles()
        )


__all__ = ["RunTable", "display_columns", "error_html", "format_value", "html_table", "status_html", "tick_box"]

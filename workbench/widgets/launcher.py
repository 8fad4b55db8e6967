"""`RunLauncher`: start tracked runs and sweeps of a notebook from a form in another notebook.

The form is built from the notebook's `parameters` cell, so it always matches what the notebook
accepts: one aligned grid (see `workbench.widgets.form`) with a row per parameter, holding the
value a run uses and, optionally, the values to sweep over. "Run" starts one run with the value
column; "Sweep" runs the grid of the parameters that have sweep values, the others fixed at
their value. Only the fields the user changed are passed: the library records the notebook's
literal defaults for the rest (`params_given`), so every run shows its full effective parameters
and a rerun injects exactly what was given.

Values are checked before anything starts, and a bad one is shown on its own row and in the
message line, naming the field, rather than raised: an exception in a button callback would
only reach the browser console. Launched runs are followed by a background thread that redraws a
status table every second and stops once they have all ended.
"""

from __future__ import annotations

import html
import os
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from workbench.errors import ValidationError, WorkbenchError
from workbench.names import validate_name
from workbench.runs.ingest import FINAL_STATUSES
from workbench.runs.params import coerce_text, literal_defaults, notebook_parameters
from workbench.widgets.form import (
    YAML_TYPES,
    FormGrid,
    cell_layout,
    input_for,
    literal_parameters,
    sweep_input_for,
    title_html,
)
from workbench.widgets.theme import error_html, format_value, html_table, ok_html, status_html
from workbench.workspace import Workspace

#: Metrics shown per run in the status table (the first few keys, alphabetically).
STATUS_METRICS = 4


class FormErrors(ValidationError):
    """Fields of the form that do not hold a usable value: field -> its error."""

    def __init__(self, errors: dict[str, WorkbenchError]) -> None:
        super().__init__("; ".join(f"{field}: {error}" for field, error in errors.items()))
        self.errors = errors

    def html(self) -> str:
        """One error line per field, each naming its field."""
        return "<br>".join(error_html(error, field) for field, error in self.errors.items())


#: The kernel menu's value for "the notebook's own kernelspec" (a None value would show as no choice at all).
OWN_KERNEL = ""


def _kernel_choices(wanted: str | None) -> list[tuple[str, str]]:
    """The installed kernels (plus `wanted`, so an unknown one is reported when used), after the notebook's own."""
    from jupyter_client.kernelspec import KernelSpecManager

    names = sorted(set(KernelSpecManager().find_kernel_specs()) | ({wanted} if wanted else set()))
    return [("notebook's own", OWN_KERNEL), *((name, name) for name in names)]


def _assignments(values: dict[str, Any]) -> str:
    """`a=1, b='x'` for a message (escaped: values are the user's)."""
    return html.escape(", ".join(f"{k}={v!r}" for k, v in values.items()))


class RunLauncher(widgets.VBox):
    """A form to run a notebook (or sweep it) with parameters, and follow the runs it started.

    Widgets are exposed for scripting and tests: `inputs[name]` (value column), `sweep_inputs[name]`
    (sweep column; none for list/dict parameters), `experiment`, `kernel`, `parallel`, `random`,
    `run_button`, `sweep_button`, `form` (the grid; `form.notes[field]` is a row's note),
    `message`, `status`.
    """

    def __init__(
        self,
        notebook: str | os.PathLike[str],
        experiment: str | None = None,
        ws: Workspace | None = None,
        poll_seconds: float = 1.0,
        kernel: str | None = None,
    ) -> None:
        self.notebook = Path(notebook)
        self.ws = ws
        self.poll_seconds = poll_seconds
        self.parameters = notebook_parameters(self.notebook)
        self.run_ids: list[str] = []
        self.runs: dict[str, Any] = {}
        self.sweep_state: dict[str, Any] | None = None
        self.sweep_result: Any = None
        self._lock = threading.RLock()
        self._poller: threading.Thread | None = None
        self._sweeper: threading.Thread | None = None
        self._build_widgets(experiment, kernel)
        self.form = self._build_form()
        self._initial = {name: widget.value for name, widget in self.inputs.items()}
        self.message = widgets.HTML()
        self.status = widgets.HTML()
        title = widgets.HTML(title_html(self.notebook.name, bool(self.parameters)))
        super().__init__([title, self.form, self.message, self.status])

    def _build_widgets(self, experiment: str | None, kernel: str | None) -> None:
        """The inputs and buttons, wired up (live checks on every field that can hold a bad value)."""
        from workbench.sweeps import default_parallel

        self.inputs = {name: input_for(name, spec) for name, spec in self.parameters.items()}
        self.sweep_inputs = {name: box for name, spec in self.parameters.items()
                             if (box := sweep_input_for(name, spec)) is not None}  # fmt: skip
        self.experiment = widgets.Text(value=experiment or "", placeholder="default", layout=cell_layout())
        self.kernel = widgets.Dropdown(options=_kernel_choices(kernel), value=kernel or OWN_KERNEL,
                                     layout=cell_layout())  # fmt: skip
        cores = max(default_parallel(), 1)
        self.parallel = widgets.IntSlider(value=min(2, cores), min=1, max=cores, layout=cell_layout())
        self.random = widgets.BoundedIntText(value=0, min=0, max=100_000, layout=cell_layout(),
                                             tooltip="Sample N combinations (0: the full grid)")  # fmt: skip
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play", layout=cell_layout())
        self.sweep_button = widgets.Button(description="Sweep", icon="th", layout=cell_layout())
        self.run_button.on_click(lambda _button: self.launch())
        self.sweep_button.on_click(lambda _button: self.launch_sweep())
        for name in self.parameters:
            if self.parameters[name]["type"] in YAML_TYPES:
                self.inputs[name].observe(lambda _change, name=name: self._check_live(name), names="value")
            if name in self.sweep_inputs:
                self.sweep_inputs[name].observe(lambda _change, name=name: self._check_live(name), names="value")
        self.experiment.observe(lambda _change: self._check_live("experiment"), names="value")
        self.random.observe(lambda _change: self._show_sweep_size(), names="value")

    def _build_form(self) -> FormGrid:
        """Every field as a row of one grid: parameters, then run settings, then sweep settings, then the buttons."""
        form = FormGrid()
        form.add_header("parameter", "value", "sweep over (optional)", "")
        for name, spec in self.parameters.items():
            form.add_row(name, self.inputs[name], self.sweep_inputs.get(name), spec.get("help") or "")
        form.add_row("experiment", self.experiment, help_text="where the runs are recorded")
        form.add_row("kernel", self.kernel)
        form.add_row("parallel", None, self.parallel, "sweep runs at a time")
        form.add_row("random", None, self.random, "sample N combinations (0: the full grid)")
        form.add_row("actions", self.run_button, self.sweep_button, label="")
        return form

    # ----------------------------------------------------------------------------------------
    # Reading the form

    def _value(self, name: str) -> Any:
        """A value field, typed: YAML fields (lists, dicts, expression defaults) are parsed like the CLI's."""
        widget, spec = self.inputs[name], self.parameters[name]
        if spec["type"] in YAML_TYPES:
            return coerce_text(name, widget.value, spec["type"])
        return widget.value

    def _edited(self, name: str) -> bool:
        """Whether the user changed a value field. Only those are given to a run: an expression default
        (`x = np.arange(3)`) shows as its source text, which is not a value, and the literal defaults
        are recorded by the run itself, so `params_given` (what a rerun injects) stays what was chosen."""
        return self.inputs[name].value != self._initial[name]

    def params(self) -> dict[str, Any]:
        """The parameters to give a run: the fields the user changed, typed.

        The others are left to the notebook; the run still records their literal defaults (see
        `effective_params`). Raises ValidationError for text that does not parse (bad YAML).
        """
        return {name: self._value(name) for name in self.inputs if self._edited(name)}

    def effective_params(self) -> dict[str, Any]:
        """What a run started now records: the notebook's literal defaults, overridden by `params()`."""
        return {**literal_defaults(self.notebook), **self.params()}

    def _sweep_values(self, name: str) -> Any:
        """The values of `name` to sweep over (a list, or a distribution), typed like its default."""
        from workbench.sweeps import parse_grid_option

        return parse_grid_option(f"{name}={self.sweep_inputs[name].value.strip()}", self.parameters)[1]

    def grid(self) -> dict[str, Any]:
        """The sweep grid: every parameter with sweep values filled in, typed like the notebook's defaults."""
        grid = {name: self._sweep_values(name) for name, box in self.sweep_inputs.items() if box.value.strip()}
        if not grid:
            raise ValidationError("Fill in the values of at least one parameter to sweep over.",
                                  "e.g. 0.01, 0.1, 1 in the 'sweep over' column of a parameter.")  # fmt: skip
        return grid

    def _is_swept(self, field: str) -> bool:
        """Whether a parameter has sweep values typed in (then a Sweep ignores its value column)."""
        return field in self.sweep_inputs and bool(self.sweep_inputs[field].value.strip())

    def _field_error(self, field: str, value: bool = True, sweep: bool = True) -> WorkbenchError | None:
        """What is wrong with one field, if anything: its `value` column, its `sweep` column, or both."""
        try:
            if field == "experiment":
                if self.experiment.value.strip():
                    validate_name(self.experiment.value.strip(), "experiment name")
                return None
            if sweep and self._is_swept(field):
                self._sweep_values(field)
            if value and self._edited(field):
                self._value(field)
        except WorkbenchError as error:
            return error
        return None

    def check(self, sweeping: bool = False) -> None:
        """Check the fields a Run (or a Sweep) uses; raises FormErrors naming every bad one.

        Every row's note shows what is wrong with either of its columns; only the columns the
        action uses block it (a Run ignores sweep values; a Sweep ignores a swept field's value).
        """
        errors = {}
        for field in [*self.inputs, "experiment"]:
            self._mark(field)
            error = self._field_error(field, value=not (sweeping and self._is_swept(field)), sweep=sweeping)
            if error is not None:
                errors[field] = error
        if errors:
            raise FormErrors(errors)

    def _mark(self, field: str) -> None:
        """Show what is wrong with either column of a field in its row's note (or its help text when nothing is)."""
        error = self._field_error(field)
        self.form.show_error(field, None if error is None else error_html(error))

    def _check_live(self, field: str) -> None:
        """Re-check one field as it is edited, so a mistake shows on its row before any click."""
        self._mark(field)
        self._show_sweep_size()

    def _show_sweep_size(self) -> None:
        """Say on the Sweep button how many runs it would start (nothing while a sweep field is bad)."""
        from workbench.sweeps import sweep_size

        try:
            size = sweep_size(self.grid(), self.random.value or None)
        except WorkbenchError:
            self.sweep_button.description = "Sweep"
            return
        self.sweep_button.description = f"Sweep ({size} run{'s' if size != 1 else ''})"

    # ----------------------------------------------------------------------------------------
    # Actions

    def launch(self) -> str | None:
        """Start one background run with the form's values; returns its id (None on an error)."""
        from workbench.runs.launch import run

        try:
            self.check()
            given = self.params()
            started = run(self.notebook, given, experiment=self.experiment.value.strip() or None,
                          kernel=self.kernel.value or None, background=True, ws=self.ws)  # fmt: skip
        except FormErrors as errors:
            self.message.value = errors.html()
            return None
        except WorkbenchError as error:
            self.message.value = error_html(error)
            return None
        what = f"with {_assignments(given)}" if given else "with the notebook's defaults"
        self.message.value = ok_html(f"Started run <code>{started.run_id}</code> {what}.")
        self._track([started.run_id], {started.run_id: started})
        return started.run_id

    def launch_sweep(self) -> bool:
        """Check the sweep now, then run it in a background thread (it blocks until every run ends)."""
        if self._sweeper is not None and self._sweeper.is_alive():
            self.message.value = error_html(WorkbenchError("A sweep is already running from this launcher."))
            return False
        try:
            self.check(sweeping=True)
            grid = self.grid()
            fixed = {k: v for k, v in self.params().items() if k not in grid}
        except FormErrors as errors:
            self.message.value = errors.html()
            return False
        except WorkbenchError as error:
            self.message.value = error_html(error)
            return False
        fixed_text = f"; fixed: {_assignments(fixed)}" if fixed else ""
        self.message.value = ok_html(f"Sweep starting over {html.escape(' × '.join(grid))}{fixed_text}...")
        with self._lock:
            self.sweep_state = {"total": 0, "finished": 0, "failed": 0, "running": 0}
        self._sweeper = threading.Thread(target=self._sweep, args=(grid, fixed), name="workbench-sweep", daemon=True)
        self._sweeper.start()
        self._start_poller()
        return True

    def _sweep(self, grid: dict[str, Any], fixed: dict[str, Any]) -> None:
        from workbench.sweeps import sweep

        try:
            result = sweep(self.notebook, grid, params=fixed, parallel=self.parallel.value,
                           random=self.random.value or None, experiment=self.experiment.value.strip() or None,
                           kernel=self.kernel.value or None, on_progress=self._on_progress, ws=self.ws)  # fmt: skip
        except Exception as error:  # a thread has nobody to raise to: every failure goes to the widget
            self.message.value = error_html(error)
            return
        finally:
            with self._lock:
                self.sweep_state = None
        self.sweep_result = result
        failed = f", {len(result.failed)} failed" if result.failed else ""
        line = f"Sweep {result.sweep_id} done: {len(result.run_ids)} runs{failed}."
        self.message.value = error_html(line) if result.failed else ok_html(html.escape(line))
        self._track(result.run_ids, {})

    def _on_progress(self, progress: dict[str, int]) -> None:
        with self._lock:
            self.sweep_state = dict(progress)
        self._redraw()

    # ----------------------------------------------------------------------------------------
    # Status area

    def _track(self, run_ids: list[str], known: dict[str, Any]) -> None:
        with self._lock:
            for run_id in run_ids:
                if run_id not in self.runs:
                    self.run_ids.append(run_id)
                self.runs[run_id] = known.get(run_id)
        self.refresh_status()
        self._start_poller()

    @property
    def active(self) -> bool:
        """Whether a tracked run may still change or a sweep is still going."""
        with self._lock:
            pending = any(run is None or run.status not in FINAL_STATUSES for run in self.runs.values())
            return pending or self.sweep_state is not None

    def refresh_status(self) -> None:
        """Read every tracked run that has not ended yet and redraw the status table."""
        from workbench.runs.store import get_run

        with self._lock:
            open_ids = [r for r in self.run_ids if self.runs[r] is None or self.runs[r].status not in FINAL_STATUSES]
        for run_id in open_ids:
            try:
                fresh = get_run(run_id, self.ws)
            except WorkbenchError as error:
                self.message.value = error_html(error)
                continue
            with self._lock:
                self.runs[run_id] = fresh
        self._redraw()

    def _redraw(self) -> None:
        with self._lock:
            runs = [self.runs[r] for r in self.run_ids if self.runs[r] is not None]
            sweep_state = dict(self.sweep_state) if self.sweep_state is not None else None
        parts = []
        if sweep_state is not None:
            counts = {k: sweep_state.get(k, 0) for k in ("finished", "failed", "running", "total")}
            parts.append("<div>Sweep: {finished} finished, {failed} failed, {running} running of {total}</div>"
                         .format(**counts))  # fmt: skip
        if runs:
            parts.append(status_table(runs))
        self.status.value = "".join(parts)

    def _start_poller(self) -> None:
        with self._lock:
            if self._poller is not None and self._poller.is_alive():
                return
            self._poller = threading.Thread(target=self._poll, name="workbench-launcher", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        """Refresh every `poll_seconds` until every run has ended and no sweep is going."""
        while self.active:
            time.sleep(self.poll_seconds)
            try:
                self.refresh_status()
            except Exception as error:  # keep the thread from dying silently
                self.message.value = error_html(error)
                return

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the tracked runs and any sweep have ended (for scripts and tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._sweeper, self._poller):
            if thread is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.active


def status_table(runs: list[Any]) -> str:
    """Launched runs as an HTML table: id, status, duration and the first few metrics."""
    metric_keys = sorted({k for run in runs for k in run.metrics})[:STATUS_METRICS]
    rows = [{"run_id": run.run_id, "status": run.status, "duration_s": run.duration_s,
             **{f"metrics.{k}": run.metrics.get(k) for k in metric_keys}} for run in runs]  # fmt: skip
    return html_table(pd.DataFrame(rows), ["run_id", "status", "duration_s", *[f"metrics.{k}" for k in metric_keys]])


__all__ = ["FormErrors", "RunLauncher", "format_value", "input_for", "literal_parameters", "status_html",
           "status_table"]  # fmt: skip

"""`RunLauncher`: start tracked runs and sweeps of a notebook from a form in another notebook.

The form is built from the notebook's `parameters` cell, so it always matches what the
notebook accepts, and values are checked by the same validation as `wb.run` before anything
starts. Mistakes are shown in the widget as a red line rather than raised, because an exception
in a button callback would only reach the browser console. Launched runs are followed by a
background thread that redraws a status table every second and stops once they have all ended.
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
from workbench.runs.ingest import FINAL_STATUSES
from workbench.runs.params import coerce_text, literal_defaults, notebook_parameters
from workbench.widgets.table import error_html, format_value, status_html
from workbench.workspace import Workspace

YAML_TYPES = ("list", "dict", "any")
#: Metrics shown per run in the status table (the first few keys, alphabetically).
STATUS_METRICS = 4


def literal_parameters(notebook: str | os.PathLike[str]) -> set[str]:
    """Names in the parameters cell whose default is a plain literal.

    Only these are passed on unchanged: a default such as `x = np.arange(3)` comes back from
    `notebook_parameters` as the text "np.arange(3)", and passing that text would replace the
    array with a string. Such fields are only passed when the user edits them.
    """
    return set(literal_defaults(notebook))


def _yaml_text(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def input_for(name: str, spec: dict[str, Any]) -> widgets.Widget:
    """The input widget for one parameter, typed like its default; help text as tooltip."""
    default, type_name = spec["default"], spec["type"]
    common = {"description": name, "tooltip": spec.get("help") or f"{name} ({type_name})",
              "style": {"description_width": "initial"}}  # fmt: skip
    if type_name == "float":
        return widgets.FloatText(value=float(default) if isinstance(default, (int, float)) else 0.0, **common)
    if type_name == "int":
        return widgets.IntText(value=default if isinstance(default, int) else 0, **common)
    if type_name == "bool":
        return widgets.Checkbox(value=bool(default), indent=False, **common)
    if type_name == "str":
        return widgets.Text(value="" if default is None else str(default), **common)
    return widgets.Text(value=_yaml_text(default), placeholder="YAML, e.g. [1, 2] or {a: 1}", **common)


def _kernel_choices() -> list[tuple[str, str | None]]:
    """The installed kernels, after the default: the notebook's own kernelspec."""
    from jupyter_client.kernelspec import KernelSpecManager

    names = sorted(KernelSpecManager().find_kernel_specs())
    return [("notebook's own", None), *((name, name) for name in names)]


class RunLauncher(widgets.VBox):
    """A form to run a notebook (or sweep it) with parameters, and follow the runs it started.

    Widgets are exposed for scripting and tests: `inputs[name]`, `experiment`, `kernel`, `run_button`,
    `sweep_inputs[name]`, `random`, `parallel`, `sweep_button`, `message`, `status`.
    """

    def __init__(
        self,
        notebook: str | os.PathLike[str],
        experiment: str | None = None,
        ws: Workspace | None = None,
        poll_seconds: float = 1.0,
        kernel: str | None = None,
    ) -> None:
        from workbench.sweeps import default_parallel

        self.notebook = Path(notebook)
        self.ws = ws
        self.poll_seconds = poll_seconds
        # An expression default (`x = np.arange(3)`) has type "any" (a YAML field) and is only
        # passed when edited: its source text is not a value.
        self.parameters = notebook_parameters(self.notebook)
        self._literal = literal_parameters(self.notebook)
        self.run_ids: list[str] = []
        self.runs: dict[str, Any] = {}
        self.sweep_state: dict[str, Any] | None = None
        self.sweep_result: Any = None
        self._lock = threading.RLock()
        self._poller: threading.Thread | None = None
        self._sweeper: threading.Thread | None = None

        self.inputs = {name: input_for(name, spec) for name, spec in self.parameters.items()}
        self._initial = {name: widget.value for name, widget in self.inputs.items()}
        self.experiment = widgets.Text(value=experiment or "", description="experiment",
                                       placeholder="default", style={"description_width": "initial"})  # fmt: skip
        self.kernel = widgets.Dropdown(options=_kernel_choices(), value=kernel, description="kernel",
                                       style={"description_width": "initial"})  # fmt: skip
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.sweep_inputs = {
            name: widgets.Text(
                description=name,
                placeholder="v1, v2, ... or uniform(a, b)",
                tooltip=f"Values of {name} to sweep over (comma-separated)",
                style={"description_width": "initial"},
            )  # fmt: skip
            for name in self.parameters
        }
        cores = default_parallel()
        self.parallel = widgets.IntSlider(value=min(2, cores), min=1, max=max(cores, 1), description="parallel")
        self.random = widgets.BoundedIntText(value=0, min=0, max=100_000, description="random",
                                             tooltip="Sample N combinations (0: full grid)")  # fmt: skip
        self.sweep_button = widgets.Button(description="Sweep", icon="th")
        self.message = widgets.HTML()
        self.status = widgets.HTML()
        self.run_button.on_click(lambda _button: self.launch())
        self.sweep_button.on_click(lambda _button: self.launch_sweep())
        sweep_box = widgets.VBox([widgets.HTML("<b>Sweep</b> (leave a field empty to use the value above)"),
                                  *self.sweep_inputs.values(), widgets.HBox([self.parallel, self.random]),
                                  self.sweep_button])  # fmt: skip
        title = widgets.HTML(f"<b>{html.escape(self.notebook.name)}</b>"
                             + ("" if self.parameters else " <i>(no parameters cell)</i>"))  # fmt: skip
        super().__init__([title, *self.inputs.values(), self.experiment, self.kernel, self.run_button, sweep_box,
                          self.message, self.status])  # fmt: skip

    # ----------------------------------------------------------------------------------------
    # Reading the form

    def _value(self, name: str) -> Any:
        widget, spec = self.inputs[name], self.parameters[name]
        if spec["type"] in YAML_TYPES:
            return coerce_text(name, widget.value, spec["type"])
        return widget.value

    def params(self) -> dict[str, Any]:
        """The form's parameter values: literal defaults and anything the user edited.

        Raises ValidationError for text that does not parse (e.g. bad YAML in a list field).
        """
        return {name: self._value(name) for name in self.inputs
                if name in self._literal or self.inputs[name].value != self._initial[name]}  # fmt: skip

    def grid(self) -> dict[str, Any]:
        """The sweep fields that were filled in, typed like the notebook's defaults."""
        from workbench.sweeps import parse_grid_option

        grid = {}
        for name, box in self.sweep_inputs.items():
            if box.value.strip():
                key, values = parse_grid_option(f"{name}={box.value.strip()}", self.parameters)
                grid[key] = values
        if not grid:
            raise ValidationError("Fill in the values of at least one parameter to sweep over.",
                                  "e.g. 0.01, 0.1, 1 in the sweep field of a parameter.")  # fmt: skip
        return grid

    # ----------------------------------------------------------------------------------------
    # Actions

    def launch(self) -> str | None:
        """Start one background run with the form's values; returns its id (None on an error)."""
        from workbench.runs.launch import run

        try:
            started = run(self.notebook, self.params(), experiment=self.experiment.value.strip() or None,
                          kernel=self.kernel.value, background=True, ws=self.ws)  # fmt: skip
        except WorkbenchError as error:
            self.message.value = error_html(error)
            return None
        self.message.value = f"Started run <code>{started.run_id}</code>."
        self._track([started.run_id], {started.run_id: started})
        return started.run_id

    def launch_sweep(self) -> bool:
        """Check the sweep fields now, then run the sweep in a background thread (it blocks)."""
        if self._sweeper is not None and self._sweeper.is_alive():
            self.message.value = error_html(WorkbenchError("A sweep is already running from this launcher."))
            return False
        try:
            grid = self.grid()
            fixed = {k: v for k, v in self.params().items() if k not in grid}
        except WorkbenchError as error:
            self.message.value = error_html(error)
            return False
        self.message.value = "Sweep starting..."
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
                           kernel=self.kernel.value, on_progress=self._on_progress, ws=self.ws)  # fmt: skip
        except Exception as error:  # a thread has nobody to raise to: every failure goes to the widget
            self.message.value = error_html(error)
            return
        finally:
            with self._lock:
                self.sweep_state = None
        self.sweep_result = result
        failed = f", {len(result.failed)} failed" if result.failed else ""
        self.message.value = f"Sweep <code>{result.sweep_id}</code> done: {len(result.run_ids)} runs{failed}."
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
    from workbench.widgets.table import html_table

    return html_table(pd.DataFrame(rows), ["run_id", "status", "duration_s", *[f"metrics.{k}" for k in metric_keys]])


__all__ = ["RunLauncher", "format_value", "input_for", "literal_parameters", "status_html", "status_table"]

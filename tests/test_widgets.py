"""Notebook widgets driven like a user would: set values, click buttons, read what is shown."""

from __future__ import annotations

import re

import ipywidgets as widgets
import pytest
from test_lab_extension import lab  # noqa: F401 - the fixture of the browser test below

from workbench.widgets import RunLauncher, RunTable

PARAMS = """import numpy as np
lr = 0.1  # learning rate
depth = 3  # tree depth
name = 'a'
flag = True
layers = [1, 2]
grid = np.arange(3)
"""

TRAIN = "import workbench as wb\nwb.log_metric('loss', lr * depth)"


def make_run(ws, params: dict, loss: float, *, end: bool = True, experiment: str = "e") -> str:
    """A synthetic run (no kernel); it is indexed by the next read."""
    from workbench.runs.lifecycle import create_run

    rec = create_run(ws, experiment=experiment, kind="notebook", params=params)
    rec.writer.emit("metric", key="loss", value=loss, step=0, at=None)
    if end:
        rec.end("finished")
    else:
        rec.set_status("running")
        rec.writer.flush()
    return rec.run_id


def is_error(html: str) -> bool:
    """An error line of the widgets (themed: see `test_widget_html_uses_only_theme_colours`)."""
    return "wb-w-error" in html and "var(--jp-error-color1)" in html


#: CSS properties that take a colour, and what a value may hold besides theme variables.
COLOUR_PROPERTY = re.compile(
    r"(?<![\w-])(color|background(?:-color)?|border(?:-(?:top|right|bottom|left))?(?:-color)?|box-shadow)\s*:\s*([^;}\"']+)"
)
NOT_A_COLOUR = re.compile(r"color-mix\(in srgb|\d+(?:\.\d+)?(?:px|%)?|solid|inset|none|[(),\s-]")


def assert_theme_colours(html: str) -> None:
    """Every colour in `html` is a JupyterLab theme variable (or a mix of them), none hard-coded."""
    assert not re.search(r"#[0-9a-fA-F]{3,8}\b|rgba?\(|hsla?\(", html), html
    declarations = COLOUR_PROPERTY.findall(html)
    for prop, value in declarations:
        rest = NOT_A_COLOUR.sub("", re.sub(r"var\(--jp-[\w-]+\)", "", value))
        assert rest == "", f"{prop}: {value} holds a colour that is not a theme variable"


# --------------------------------------------------------------------------------------------
# RunTable


def test_run_table_filter_sort_and_compare_ticked_rows(ws):
    ids = [make_run(ws, {"lr": lr}, loss) for lr, loss in [(0.1, 0.5), (0.2, 0.3), (0.3, 0.4)]]
    make_run(ws, {"lr": 9.0}, 9.0, experiment="other")
    table = RunTable(experiment="e", refresh_seconds=0)
    assert all(run_id in table.table.value for run_id in ids)
    assert table.shown_ids == ids[::-1]  # newest first
    # One checkbox per row, in row order, under the header's "tick all" box.
    assert list(table.ticks.children) == [table.select_all, *(table.checkboxes[r] for r in ids[::-1])]
    assert "metrics.loss" in table.sort.options and table.metric.value == "loss"

    table.sort.value = "metrics.loss"
    table.descending.value = False
    assert list(table.frame["run_id"]) == [ids[1], ids[2], ids[0]]
    table.filter_box.value = "params.lr >= 0.2"
    assert set(table.frame["run_id"]) == {ids[1], ids[2]}
    assert ids[0] not in table.table.value and ids[0] not in table.checkboxes

    table.compare_button.click()
    assert "Tick at least one run" in table.message.value and is_error(table.message.value)
    table.checkboxes[ids[2]].value = True  # ticked in any order, compared in table order
    table.checkboxes[ids[1]].value = True
    assert table.selected == [ids[1], ids[2]] and table.select_all.value
    assert "2 runs ticked" in table.selection.value
    table.compare_button.click()
    assert table.message.value == ""
    assert table.comparison.run_ids == [ids[1], ids[2]]
    shown, *figures = table.output.outputs
    assert ids[1] in shown["data"]["text/html"] and ids[0] not in shown["data"]["text/html"]
    assert ids[2] in shown["data"]["text/html"]
    # The figures go as plotly's mimetype (the comparison's own; their content is test_compare's).
    assert len(figures) == len(table.comparison.figures) >= 1
    assert all("application/vnd.plotly.v1+json" in figure["data"] for figure in figures)


def test_run_table_ticks_survive_refresh_and_tick_all(ws):
    ids = [make_run(ws, {"lr": lr}, lr) for lr in (0.1, 0.2, 0.3)]
    table = RunTable(refresh_seconds=0)
    table.checkboxes[ids[0]].value = True
    box = table.checkboxes[ids[0]]
    newer = make_run(ws, {"lr": 0.4}, 0.4)
    table.refresh_button.click()
    assert table.checkboxes[ids[0]] is box and table.selected == [ids[0]]  # kept, not redrawn unticked
    assert not table.select_all.value and not table.checkboxes[newer].value

    table.select_all.value = True
    assert table.selected == table.shown_ids == [newer, *ids[::-1]]
    table.checkboxes[newer].value = False
    assert not table.select_all.value and table.selected == ids[::-1]
    table.select([ids[1]])
    table.compare_button.click()
    assert table.comparison.run_ids == [ids[1]]


def test_run_table_bad_filter_is_shown_not_raised(ws):
    make_run(ws, {"lr": 0.1}, 0.5)
    table = RunTable(refresh_seconds=0)
    before = table.frame
    table.filter_box.value = "metrics.loss <"
    assert "Invalid filter" in table.message.value and is_error(table.message.value)
    assert "<b>filter</b>" in table.message.value  # names the field
    assert table.frame is before  # the last good result stays on screen
    table.filter_box.value = ""
    assert table.message.value == ""


def test_run_table_refreshes_while_runs_are_active(ws):
    from workbench.runs.ingest import ingest_runs
    from workbench.runs.lifecycle import create_run

    rec = create_run(ws, experiment="e", kind="notebook", params={"lr": 0.1})
    rec.set_status("running")
    rec.sync()
    table = RunTable(refresh_seconds=0.1)
    assert table.active and table._poller is not None and table._poller.is_alive()
    rec.end("finished")
    ingest_runs(ws, [rec.run_id])
    table._poller.join(timeout=20)
    assert not table._poller.is_alive()
    assert list(table.frame["status"]) == ["finished"]
    assert "finished" in table.table.value


def test_run_table_rows_line_up_with_their_checkboxes(ws):
    from workbench.widgets.table import CONTROL_STYLE
    from workbench.widgets.theme import ROW_PX

    make_run(ws, {"lr": 0.1}, 0.5)
    table = RunTable(refresh_seconds=0)
    for box in table.ticks.children:  # as high as a table row, nothing around it
        assert (box.layout.height, box.layout.margin) == (f"{ROW_PX}px", "0")
    assert f"height:{ROW_PX}px" in table.table.value and "border:none" in table.table.value
    assert table.table.layout.margin == "0" and table.ticks.layout.margin == "0"
    for control in (table.filter_box, table.sort, table.limit, table.metric):  # first control of each row
        assert control.style.description_width == CONTROL_STYLE["description_width"]


# --------------------------------------------------------------------------------------------
# Colours


def test_widget_html_uses_only_theme_colours(ws, notebook):
    """Light-theme colours in the widgets' HTML would be white-on-white (or unreadable) in the dark theme."""
    from workbench.widgets.theme import STATUS_COLOURS, html_table, status_html

    ids = [make_run(ws, {"lr": 0.1}, 0.5), make_run(ws, {"lr": 0.2}, 0.6, end=False)]
    table = RunTable(refresh_seconds=0)
    table.checkboxes[ids[0]].value = True
    launcher = RunLauncher(notebook("colours", PARAMS, TRAIN))
    launcher.inputs["layers"].value = "[1"
    launcher.run_button.click()
    shown = [table.table.value, table.selection.value, launcher.message.value,
             *(note.value for note in launcher.form.notes.values()),
             *(cell.value for cell in launcher.form.children if isinstance(cell, widgets.HTML)),
             *(status_html(status) for status in [*STATUS_COLOURS, "other"])]  # fmt: skip
    table.filter_box.value = "metrics.loss <"
    shown.append(table.message.value)
    import pandas as pd

    shown.append(html_table(pd.DataFrame([{"run_id": "r", "status": "killed", "x": 1.5}]), ["run_id", "status", "x"]))
    everything = "".join(shown)
    assert "<th" in everything and "wb-w-error" in everything and "wb-w-note" in everything
    assert COLOUR_PROPERTY.search(everything) and "var(--jp-layout-color2)" in everything  # headers: theme background
    for piece in shown:
        assert_theme_colours(piece)


# --------------------------------------------------------------------------------------------
# RunLauncher


def test_launcher_form_matches_parameters(ws, notebook):
    launcher = RunLauncher(notebook("form", PARAMS, TRAIN))
    assert isinstance(launcher, widgets.VBox)
    inputs = launcher.inputs
    assert isinstance(inputs["lr"], widgets.FloatText) and inputs["lr"].value == 0.1
    assert isinstance(inputs["depth"], widgets.IntText) and inputs["depth"].value == 3
    assert isinstance(inputs["name"], widgets.Text) and inputs["name"].value == "a"
    assert isinstance(inputs["flag"], widgets.Checkbox) and inputs["flag"].value is True
    assert inputs["layers"].value == "[1, 2]"
    assert inputs["lr"].tooltip == "learning rate" and "learning rate" in launcher.form.notes["lr"].value
    # Only what the user changes is given; the run records the literal defaults itself, and the
    # expression default is never passed (it would arrive as the text "np.arange(3)").
    assert launcher.params() == {}
    assert launcher.effective_params() == {"lr": 0.1, "depth": 3, "name": "a", "flag": True, "layers": [1, 2]}
    assert inputs["grid"].value == "np.arange(3)"
    inputs["layers"].value = "[3, 4, 5]"
    inputs["grid"].value = "[0, 1]"
    assert launcher.params() == {"layers": [3, 4, 5], "grid": [0, 1]}
    assert launcher.effective_params()["layers"] == [3, 4, 5]
    # One sweep field per parameter that comma lists can hold (not lists/dicts); no second form.
    assert set(launcher.sweep_inputs) == {"lr", "depth", "name", "flag", "grid"}


def test_launcher_form_is_one_aligned_grid(ws, notebook):
    from workbench.widgets.form import FORM_COLUMNS

    launcher = RunLauncher(notebook("grid", PARAMS, TRAIN))
    form = launcher.form
    assert isinstance(form, widgets.GridBox) and form.layout.grid_template_columns == FORM_COLUMNS
    columns = len(FORM_COLUMNS.split(" ")) - FORM_COLUMNS.count(", ")  # minmax(a, b) is one column
    assert columns == 4 and len(form.children) % columns == 0
    rows = [form.children[i : i + columns] for i in range(0, len(form.children), columns)]
    names = [*launcher.parameters, "experiment", "kernel", "parallel", "random", ""]
    assert [row[0].value for row in rows[1:]] == names
    values = [*launcher.inputs.values(), launcher.experiment, launcher.kernel, launcher.run_button]
    sweeps = [*launcher.sweep_inputs.values(), launcher.parallel, launcher.random, launcher.sweep_button]
    for column, fields in ((1, values), (2, sweeps)):
        for field in fields:  # in its column, filling it, with no label of its own to shift it
            assert any(row[column] is field for row in rows), field
            assert (field.layout.width, field.layout.margin) == ("auto", "0")
            assert getattr(field, "description", "") in ("", "Run", "Sweep")
    assert all(isinstance(row[0], widgets.Label) for row in rows[1:])


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("layers", "[1, 2", "expects list"), ("layers", "3", "expects a list"),
     ("experiment", "bad name!", "experiment name")],
)  # fmt: skip
def test_launcher_bad_value_shows_error_and_starts_nothing(ws, notebook, field, value, expected):
    from workbench.runs.query import runs

    launcher = RunLauncher(notebook("bad", PARAMS, TRAIN))
    target = launcher.experiment if field == "experiment" else launcher.inputs[field]
    target.value = value
    assert expected in launcher.form.notes[field].value  # on its row as soon as it is typed
    launcher.run_button.click()
    assert expected in launcher.message.value and is_error(launcher.message.value)
    assert f"<b>{field}</b>" in launcher.message.value
    assert launcher.run_ids == [] and launcher._poller is None
    assert runs().empty


def test_launcher_sweep_errors_are_shown(ws, notebook):
    from workbench.runs.query import runs

    launcher = RunLauncher(notebook("sweep_bad", PARAMS, TRAIN))
    launcher.sweep_button.click()
    assert "at least one parameter" in launcher.message.value
    launcher.sweep_inputs["depth"].value = "2, deep"
    assert "expects int" in launcher.form.notes["depth"].value and launcher.sweep_button.description == "Sweep"
    launcher.sweep_button.click()
    assert "expects int" in launcher.message.value and "<b>depth</b>" in launcher.message.value
    assert launcher._sweeper is None and runs().empty
    launcher.sweep_inputs["depth"].value = "2, 4"
    launcher.sweep_inputs["lr"].value = "0.1, 0.2, 0.3"
    assert launcher.sweep_button.description == "Sweep (6 runs)"
    assert launcher.grid() == {"lr": [0.1, 0.2, 0.3], "depth": [2, 4]}
    launcher.random.value = 2
    assert launcher.sweep_button.description == "Sweep (2 runs)"


def test_launcher_checks_only_the_columns_an_action_uses(ws, notebook):
    """A swept parameter's value column is unused by a Sweep; sweep values are unused by a Run."""
    from workbench.widgets.launcher import FormErrors

    launcher = RunLauncher(notebook("columns", PARAMS, TRAIN))
    launcher.inputs["grid"].value = "[0"
    launcher.sweep_inputs["grid"].value = "1, 2"
    launcher.check(sweeping=True)
    with pytest.raises(FormErrors) as raised:
        launcher.check()
    assert set(raised.value.errors) == {"grid"}
    launcher.inputs["grid"].value = "[0, 1]"
    launcher.sweep_inputs["lr"].value = "0.1, x"
    launcher.check()
    with pytest.raises(FormErrors):
        launcher.check(sweeping=True)


@pytest.mark.slow
def test_launcher_run_records_full_params_and_shows_status(ws, notebook):
    from workbench.runs.lifecycle import given_params
    from workbench.runs.store import get_run

    launcher = RunLauncher(notebook("tiny", "lr = 0.1\ndepth = 3\nname = 'a'", TRAIN), poll_seconds=0.2)
    launcher.inputs["lr"].value = 0.5
    launcher.experiment.value = "widgets"
    assert launcher.kernel.label == "notebook's own" and ("python3", "python3") in launcher.kernel.options
    launcher.kernel.value = "python3"
    launcher.run_button.click()
    assert "Started run" in launcher.message.value and "lr=0.5" in launcher.message.value
    (run_id,) = launcher.run_ids
    assert launcher.wait(timeout=120), launcher.status.value
    assert run_id in launcher.status.value and "finished" in launcher.status.value
    assert "1.5" in launcher.status.value  # loss = lr * depth, shown as a metric column
    run = get_run(run_id)
    assert run.status == "finished" and run.experiment == "widgets" and run.kernel == "python3"
    assert run.params == {"lr": 0.5, "depth": 3, "name": "a"}  # every effective value, defaults included
    assert given_params(ws, run_id) == {"lr": 0.5}  # ...and which one was given (what a rerun injects)
    # What wait() promised: nothing tracked may still change, and the widget shows the end state.
    assert not launcher.active and launcher.runs[run_id].status == "finished"
    assert ">running<" not in launcher.status.value and ">queued<" not in launcher.status.value


@pytest.mark.slow
def test_launcher_sweep_runs_the_grid_with_the_rest_fixed(ws, notebook):
    from workbench.runs.lifecycle import given_params
    from workbench.runs.store import get_run

    launcher = RunLauncher(notebook("swept", "lr = 0.1\ndepth = 3\nname = 'a'", TRAIN), poll_seconds=0.2)
    launcher.sweep_inputs["lr"].value = "0.1, 0.2"
    launcher.inputs["depth"].value = 4  # fixed for every run of the sweep
    launcher.inputs["lr"].value = 9.0  # unused: lr is swept
    launcher.experiment.value = "widget-sweep"
    launcher.parallel.value = 1
    assert launcher.sweep_button.description == "Sweep (2 runs)"
    launcher.sweep_button.click()
    assert launcher.wait(timeout=180), launcher.message.value
    result = launcher.sweep_result
    assert result is not None and not result.failed, launcher.message.value
    assert "done: 2 runs" in launcher.message.value and launcher.run_ids == result.run_ids
    runs = [get_run(run_id) for run_id in result.run_ids]
    assert sorted(run.params["lr"] for run in runs) == [0.1, 0.2]
    for run in runs:
        assert run.experiment == "widget-sweep" and run.status == "finished"
        assert run.params == {"lr": run.params["lr"], "depth": 4, "name": "a"}
        assert given_params(ws, run.run_id) == {"lr": run.params["lr"], "depth": 4}
        assert run.metrics["loss"] == pytest.approx(run.params["lr"] * 4)


def test_launcher_sweep_failure_in_thread_is_shown(ws, notebook):
    """The sweep runs in a thread: what goes wrong there must still reach the widget."""
    path = notebook("vanishing", "lr = 0.1\ndepth = 3", TRAIN)
    launcher = RunLauncher(path, poll_seconds=0.05)
    launcher.sweep_inputs["lr"].value = "0.1, 0.2"
    path.unlink()  # the sweep itself re-reads the notebook, in the background thread
    launcher.sweep_button.click()
    assert launcher.wait(timeout=30)
    assert "Notebook not found" in launcher.message.value and is_error(launcher.message.value)
    assert launcher.sweep_state is None and launcher.sweep_result is None and launcher.run_ids == []


# --------------------------------------------------------------------------------------------
# In JupyterLab (browser)

#: In the page: the tops of the table's rows and of the checkboxes beside them, and the left
#: edge of every cell of the launcher's form grid by column.
GEOMETRY_JS = """() => {
  const table = document.querySelector('.wb-w-table');
  const ticks = table.closest('.widget-hbox').querySelector('.widget-vbox');
  const tops = nodes => [...nodes].map(n => Math.round(n.getBoundingClientRect().top));
  const grid = document.querySelector('.widget-gridbox');
  const columns = getComputedStyle(grid).gridTemplateColumns.split(' ').length;
  const lefts = [...Array(columns)].map(() => new Set());
  [...grid.children].forEach((cell, i) => {
    const control = cell.matches('.widget-label') ? cell : cell.querySelector('input, select, button');
    if (control) lefts[i % columns].add(Math.round(control.getBoundingClientRect().left));
  });
  return {rows: tops(table.querySelectorAll('tr')), ticks: tops(ticks.children), lefts: lefts.map(s => s.size)};
}"""


@pytest.mark.browser
@pytest.mark.slow
def test_widgets_in_dark_lab_are_readable_and_aligned(lab, tmp_path):  # noqa: F811 - the fixture
    """What the unit tests assert on attributes, seen in a real JupyterLab in the dark theme."""
    from conftest import write_notebook
    from test_lab_experience import contrast, use_theme
    from test_lab_extension_flows import browser_page

    shown = "t = wb.widgets.RunTable(refresh_seconds=0); t"
    launcher = "l = wb.widgets.RunLauncher('train.ipynb'); l.experiment.value = 'bad name!'; l.run_button.click(); l"
    write_notebook(lab["root"] / "widgets.ipynb", None, "import workbench as wb\n" + shown, launcher)
    use_theme(tmp_path / "lab-settings", "JupyterLab Dark")
    with browser_page(lab["url"].replace("/lab?", "/lab/tree/widgets.ipynb?reset&")) as page:
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
        page.click(".jp-Notebook .jp-Cell .jp-InputArea-editor", timeout=30_000)
        # Run the two cells, each up to its widgets being drawn.
        page.keyboard.press("Shift+Enter")
        page.wait_for_selector(".wb-w-table td .wb-w-status", timeout=60_000)
        page.keyboard.press("Shift+Enter")
        page.wait_for_selector(".widget-gridbox .wb-w-error", timeout=60_000)
        for selector in (".wb-w-table th", ".wb-w-table td", ".wb-w-status", ".wb-w-error", ".wb-w-note"):
            assert contrast(page, selector) >= 4.5, selector
        geometry = page.evaluate(GEOMETRY_JS)
        assert geometry["rows"] == geometry["ticks"] and len(geometry["rows"]) == len(lab["run_ids"]) + 1
        assert geometry["lefts"] == [1, 1, 1, 0], geometry  # names, inputs and sweep inputs: one x per column
        page.screenshot(path="/tmp/workbench-widgets-dark.png")

"""Notebook widgets driven like a user would: set values, click buttons, read what is shown."""

from __future__ import annotations

import ipywidgets as widgets
import pytest

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


# --------------------------------------------------------------------------------------------
# RunTable


def test_run_table_filter_sort_and_compare(ws):
    ids = [make_run(ws, {"lr": lr}, loss) for lr, loss in [(0.1, 0.5), (0.2, 0.3), (0.3, 0.4)]]
    make_run(ws, {"lr": 9.0}, 9.0, experiment="other")
    table = RunTable(experiment="e", refresh_seconds=0)
    assert all(run_id in table.table.value for run_id in ids)
    assert [value for _, value in table.selector.options] == ids[::-1]  # newest first
    assert "metrics.loss" in table.sort.options and table.metric.value == "loss"

    table.sort.value = "metrics.loss"
    table.descending.value = False
    assert list(table.frame["run_id"]) == [ids[1], ids[2], ids[0]]
    table.filter_box.value = "params.lr >= 0.2"
    assert set(table.frame["run_id"]) == {ids[1], ids[2]}
    assert ids[0] not in table.table.value

    table.compare_button.click()
    assert "Select at least one run" in table.message.value
    table.selector.value = (ids[1], ids[2])
    assert table.selected == [ids[1], ids[2]]
    table.compare_button.click()
    assert table.message.value == ""
    assert table.comparison.run_ids == [ids[1], ids[2]]
    shown, *figures = table.output.outputs
    assert ids[1] in shown["data"]["text/html"] and ids[0] not in shown["data"]["text/html"]
    assert len(figures) == len(table.comparison.figures) >= 2
    bars = figures[0]["data"]["application/vnd.plotly.v1+json"]
    assert bars["data"][0]["type"] == "bar" and bars["data"][0]["x"] == [ids[1], ids[2]]


def test_run_table_bad_filter_is_shown_not_raised(ws):
    make_run(ws, {"lr": 0.1}, 0.5)
    table = RunTable(refresh_seconds=0)
    before = table.frame
    table.filter_box.value = "metrics.loss <"
    assert "Invalid filter" in table.message.value and "color:#cf222e" in table.message.value
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
    assert inputs["lr"].tooltip == "learning rate"
    # The expression default is not passed (it would arrive as the text "np.arange(3)").
    assert launcher.params() == {"lr": 0.1, "depth": 3, "name": "a", "flag": True, "layers": [1, 2]}
    assert inputs["grid"].value == "np.arange(3)"
    inputs["layers"].value = "[3, 4, 5]"
    inputs["grid"].value = "[0, 1]"
    assert launcher.params()["layers"] == [3, 4, 5] and launcher.params()["grid"] == [0, 1]


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
    launcher.run_button.click()
    assert expected in launcher.message.value and "color:#cf222e" in launcher.message.value
    assert launcher.run_ids == [] and launcher._poller is None
    assert runs().empty


def test_launcher_sweep_errors_are_shown(ws, notebook):
    from workbench.runs.query import runs

    launcher = RunLauncher(notebook("sweep_bad", PARAMS, TRAIN))
    launcher.sweep_button.click()
    assert "at least one parameter" in launcher.message.value
    launcher.sweep_inputs["depth"].value = "2, deep"
    launcher.sweep_button.click()
    assert "expects int" in launcher.message.value
    assert launcher._sweeper is None and runs().empty


@pytest.mark.slow
def test_launcher_run_finishes_and_shows_in_status(ws, notebook):
    from workbench.runs.store import get_run

    launcher = RunLauncher(notebook("tiny", "lr = 0.1\ndepth = 3", TRAIN), poll_seconds=0.2)
    launcher.inputs["lr"].value = 0.5
    launcher.experiment.value = "widgets"
    assert launcher.kernel.value is None and "python3" in launcher.kernel.options[1]  # default: the notebook's own
    launcher.kernel.value = "python3"
    launcher.run_button.click()
    assert "Started run" in launcher.message.value
    (run_id,) = launcher.run_ids
    assert launcher.wait(timeout=120), launcher.status.value
    assert run_id in launcher.status.value and "finished" in launcher.status.value
    assert "1.5" in launcher.status.value  # loss = lr * depth, shown as a metric column
    run = get_run(run_id)
    assert run.status == "finished" and run.experiment == "widgets" and run.params == {"lr": 0.5, "depth": 3}
    assert run.kernel == "python3"
    # What wait() promised: nothing tracked may still change, and the widget shows the end state.
    assert not launcher.active and launcher.runs[run_id].status == "finished"
    assert "running" not in launcher.status.value and "queued" not in launcher.status.value


def test_launcher_sweep_failure_in_thread_is_shown(ws, notebook):
    """The sweep runs in a thread: what goes wrong there must still reach the widget."""
    path = notebook("vanishing", "lr = 0.1\ndepth = 3", TRAIN)
    launcher = RunLauncher(path, poll_seconds=0.05)
    launcher.sweep_inputs["lr"].value = "0.1, 0.2"
    path.unlink()  # the sweep itself re-reads the notebook, in the background thread
    launcher.sweep_button.click()
    assert launcher.wait(timeout=30)
    assert "Notebook not found" in launcher.message.value and "color:#cf222e" in launcher.message.value
    assert launcher.sweep_state is None and launcher.sweep_result is None and launcher.run_ids == []

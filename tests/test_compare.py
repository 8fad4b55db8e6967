"""Run comparison figures and the side-by-side report, over synthetic runs (no kernels)."""

from __future__ import annotations

import importlib
import json

import pandas as pd
import plotly.graph_objects as go
import pytest

from workbench.errors import InvalidNameError, NotFoundError, ValidationError

cmp = importlib.import_module("workbench.compare")  # the module: `wb.compare` is the function


def make_run(ws, params: dict, losses: list[float], *, experiment: str = "e", tags: dict | None = None,
             extra: dict | None = None) -> str:  # fmt: skip
    """A finished run with `params`, a `loss` curve and optional other last-value metrics.

    It is not indexed here: the first read folds every pending run into the catalog in one
    transaction, which keeps these tests fast (each catalog transaction costs a fraction of a second).
    """
    from workbench.runs.lifecycle import create_run

    rec = create_run(ws, experiment=experiment, kind="notebook", params=params, tags=tags)
    for step, value in enumerate(losses):
        rec.writer.emit("metric", key="loss", value=value, step=step, at=None)
    for key, value in (extra or {}).items():
        rec.writer.emit("metric", key=key, value=value, step=0, at=None)
    rec.end("finished")
    return rec.run_id


def make_runs(ws, specs: list[tuple[dict, list[float]]], **kwargs) -> list[str]:
    return [make_run(ws, params, losses, **kwargs) for params, losses in specs]


@pytest.fixture(scope="module")
def sweep_ws(tmp_path_factory):
    """One workspace with four runs shared by the read-only tests: loss falls with lr
    (monotonically), the model category matters too, depth is the same everywhere."""
    from workbench.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("compare") / ".workbench")
    ids = [
        make_run(ws, {"lr": 0.01, "depth": 3, "model": "rf"}, [0.9, 0.8, 0.7], extra={"acc": 0.6}),
        make_run(ws, {"lr": 0.1, "depth": 3, "model": "rf"}, [0.8, 0.6, 0.5], extra={"acc": 0.7}),
        make_run(ws, {"lr": 0.5, "depth": 3, "model": "gb"}, [0.7, 0.4, 0.3], extra={"acc": 0.8}),
        make_run(ws, {"lr": 1.0, "depth": 3, "model": "gb"}, [0.6, 0.3, 0.2], extra={"acc": 0.9}),
    ]
    return ws, ids, cmp.runs_frame(ids, ws=ws)


@pytest.fixture()
def sweep_runs(sweep_ws, monkeypatch: pytest.MonkeyPatch):
    """The shared runs' ids, with their workspace made the current one for this test."""
    from workbench.workspace import use_workspace

    ws, ids, _ = sweep_ws
    monkeypatch.setenv("WORKBENCH_HOME", str(ws.root))
    use_workspace(ws)
    yield list(ids)
    use_workspace(None)


@pytest.fixture()
def frame(sweep_ws, sweep_runs) -> pd.DataFrame:
    """The shared runs as read once, so each test does not go back to the catalog."""
    return sweep_ws[2].copy()


def test_runs_frame_from_ids_runs_and_dataframe(sweep_runs):
    from workbench.runs.store import get_run

    by_id = cmp.runs_frame(sweep_runs)
    by_run = cmp.runs_frame([get_run(r) for r in sweep_runs])
    assert list(by_id["run_id"]) == sweep_runs == list(by_run["run_id"])
    assert by_id["metrics.loss"].tolist() == [0.7, 0.5, 0.3, 0.2]
    assert by_id["params.model"].tolist() == ["rf", "rf", "gb", "gb"]
    # A DataFrame shaped like query.runs() is used as is.
    frame = by_id.iloc[::-1]
    assert list(cmp.runs_frame(frame)["run_id"]) == sweep_runs[::-1]


def test_runs_frame_from_query_runs(sweep_runs):
    from workbench.runs.query import runs

    frame = runs(experiment="e", filter="params.lr >= 0.1", order_by="params.lr")
    fig = cmp.metric_bars(frame, "loss")
    assert set(fig.data[0].customdata) == set(sweep_runs[1:])
    assert set(fig.data[0].y) == {"lr=0.1, model=rf", "lr=0.5, model=gb", "lr=1, model=gb"}  # labels of these runs


def test_metric_vs_param_numeric_and_colored(sweep_runs, frame):
    fig = cmp.metric_vs_param(frame, "loss", "lr")
    assert isinstance(fig, go.Figure)
    (trace,) = fig.data
    assert list(trace.x) == [0.01, 0.1, 0.5, 1.0]
    assert list(trace.y) == [0.7, 0.5, 0.3, 0.2]
    assert list(trace.customdata) == sweep_runs  # the run id in the hover text, the label beside it
    assert list(trace.text) == ["lr=0.01, model=rf", "lr=0.1, model=rf", "lr=0.5, model=gb", "lr=1, model=gb"]
    colored = cmp.metric_vs_param(frame, "metrics.loss", "params.lr", color="model")
    assert sorted(t.name for t in colored.data) == ["model=gb", "model=rf"]
    gb = next(t for t in colored.data if t.name == "model=gb")
    assert list(gb.customdata) == sweep_runs[2:]
    scaled = cmp.metric_vs_param(frame, "loss", "lr", color="acc")
    assert list(scaled.data[0].marker.color) == [0.6, 0.7, 0.8, 0.9]


def test_metric_vs_categorical_param_uses_category_axis(sweep_runs, frame):
    fig = cmp.metric_vs_param(frame, "loss", "model")
    assert fig.layout.xaxis.type == "category"
    assert list(fig.layout.xaxis.categoryarray) == ["gb", "rf"]
    assert list(fig.data[0].x) == ["rf", "rf", "gb", "gb"]


def test_parallel_coordinates_encodes_categories(sweep_runs, frame):
    fig = cmp.parallel_coordinates(frame, "loss")
    (trace,) = fig.data
    labels = [d.label for d in trace.dimensions]
    assert labels == ["lr", "model", "loss"]  # depth is constant, so left out by default
    lr, model, loss = trace.dimensions
    assert list(lr.values) == [0.01, 0.1, 0.5, 1.0]
    assert list(model.ticktext) == ["gb", "rf"] and list(model.values) == [1, 1, 0, 0]
    assert list(loss.values) == [0.7, 0.5, 0.3, 0.2]
    assert list(trace.line.color) == [0.7, 0.5, 0.3, 0.2]
    explicit = cmp.parallel_coordinates(frame, "loss", params=["depth"])
    assert [d.label for d in explicit.data[0].dimensions] == ["depth", "loss"]


def test_step_curves_one_line_per_run(sweep_runs, frame):
    fig = cmp.step_curves(frame, "loss")
    assert [t.name for t in fig.data] == ["lr=0.01, model=rf", "lr=0.1, model=rf", "lr=0.5, model=gb", "lr=1, model=gb"]
    assert [t.meta for t in fig.data] == sweep_runs and "%{meta}" in fig.data[0].hovertemplate
    assert {t.mode for t in fig.data} == {"lines+markers"} and fig.layout.showlegend is not False
    assert list(fig.data[2].x) == [0, 1, 2]
    assert list(fig.data[2].y) == [0.7, 0.4, 0.3]


def test_step_curves_of_many_runs_are_plain_lines_in_run_order(tmp_path):
    """Beyond MANY_CURVES runs: one trace per colour, run i in trace i % CURVE_COLOURS (the colour it
    would have as trace i), each run's line cut from the next by a gap, label and id on every point."""
    from workbench.compare.figures import CURVE_COLOURS
    from workbench.workspace import init_workspace

    ws = init_workspace(tmp_path / ".workbench")
    count = cmp.MANY_CURVES + 5
    ids = [make_run(ws, {"i": i}, [1.0 / (i + step + 1) for step in range(4)]) for i in range(count)]
    fig = cmp.step_curves(ids[::-1], "loss", ws=ws)
    assert len(fig.data) == CURVE_COLOURS
    assert {t.mode for t in fig.data} == {"lines"} and fig.layout.showlegend is False
    assert all("%{text}" in t.hovertemplate and "run %{customdata}" in t.hovertemplate for t in fig.data)
    order = ids[::-1]
    for colour, trace in enumerate(fig.data):
        runs = order[colour::CURVE_COLOURS]
        # each run's four points, in run order, separated by one gap
        expected_ids = [None if i % 5 == 4 else runs[i // 5] for i in range(5 * len(runs) - 1)]
        assert list(trace.customdata) == expected_ids
        assert [t for t in trace.text if t is not None] == [f"i={ids.index(r)}" for r in runs for _ in range(4)]
        assert list(trace.x[:5]) == [0, 1, 2, 3, None]
    first = order.index(ids[0])  # run i=0: loss 1/(step + 1)
    trace = fig.data[first % CURVE_COLOURS]
    start = list(trace.customdata).index(ids[0])
    assert list(trace.y[start : start + 4]) == [1.0, 0.5, 1 / 3, 0.25]


def test_metric_bars_sorted(sweep_runs, frame):
    fig = cmp.metric_bars(frame, "loss")
    assert list(fig.data[0].customdata) == sweep_runs[::-1]
    assert list(fig.data[0].y) == ["lr=1, model=gb", "lr=0.5, model=gb", "lr=0.1, model=rf", "lr=0.01, model=rf"]
    assert list(fig.data[0].x) == [0.2, 0.3, 0.5, 0.7]
    assert fig.layout.yaxis.autorange == "reversed"  # the first (best) run on top
    descending = cmp.metric_bars(frame, "acc", ascending=False)
    assert list(descending.data[0].x) == [0.9, 0.8, 0.7, 0.6]


def test_param_importance(sweep_runs, frame):
    table = cmp.param_importance_table(frame, "loss")
    assert list(table.columns) == ["param", "importance", "method", "n_runs"]
    scores = table.set_index("param")
    assert scores.loc["lr", "importance"] == pytest.approx(1.0)  # perfectly monotonic
    assert scores.loc["lr", "method"] == "spearman"
    assert scores.loc["model", "method"] == "correlation ratio"
    assert 0.5 < scores.loc["model", "importance"] < 1.0
    assert "depth" not in scores.index  # constant
    assert table["param"].iloc[0] == "lr"
    fig = cmp.param_importance(frame, "loss")
    assert fig.data[0].orientation == "h"
    assert list(fig.data[0].y)[-1] == "lr"  # plotly draws the last bar on top


def test_param_importance_needs_varying_params(ws):
    ids = make_runs(ws, [({"lr": 0.1}, [0.5]), ({"lr": 0.1}, [0.4])])
    assert cmp.param_importance_table(ids, "loss").empty
    with pytest.raises(ValidationError, match="nothing to rank"):
        cmp.param_importance(ids, "loss")


def test_compare_table_marks_differences(sweep_runs, frame):
    result = cmp.compare(frame.iloc[:2], metric="loss")
    table = result.table
    assert list(table.columns) == [*sweep_runs[:2], "differs"]
    assert table.loc["params.lr", "differs"]
    assert not table.loc["params.depth", "differs"]
    assert not table.loc["params.model", "differs"]
    assert table.loc["metrics.loss", "differs"]
    assert table.loc["params.lr", sweep_runs[0]] == 0.01
    assert list(result.differences.index) == ["params.lr", "metrics.acc", "metrics.loss"]
    assert {"metric_bars", "step_curves", "parallel_coordinates", "param_importance", "metric_vs_lr"} <= set(
        result.figures
    )
    assert all(isinstance(f, go.Figure) for f in result.figures.values())
    json.loads(result.figures["metric_bars"].to_json())


def test_compare_missing_key_counts_as_difference(ws):
    a = make_run(ws, {"lr": 0.1}, [0.5], tags={"team": "ml"})
    b = make_run(ws, {"lr": 0.1, "extra": 1}, [0.5])
    table = cmp.compare([a, b]).table
    assert table.loc["params.extra", "differs"]
    assert table.loc["params.extra", a] is None
    assert table.loc["tags.team", "differs"]
    assert not table.loc["params.lr", "differs"]


def test_compare_picks_default_metric_and_skips_param_figures(ws):
    ids = [make_run(ws, {"lr": 0.1}, [0.5, 0.4], extra={"acc": 0.1}), make_run(ws, {"lr": 0.1}, [0.3])]
    result = cmp.compare(ids)
    assert result.metric == "loss"  # both runs have it, only one has acc
    assert set(result.figures) == {"metric_bars", "step_curves"}


def test_compare_html_report(sweep_runs, frame, tmp_path):
    result = cmp.compare(pd.concat([cmp.runs_frame(frame)]), metric="loss")
    out = result.to_html(tmp_path / "report.html")
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "plotly" in text.lower()
    assert all(run_id in text for run_id in sweep_runs)
    assert text.count('<script type="text/javascript">/**\n* plotly.js') <= 1  # plotly.js inlined once
    assert 'class="wb-differs"' in text
    assert "<script src=" not in text  # standalone: no script fetched from the network
    html = result._repr_html_()
    assert "wb-compare" in html and sweep_runs[0] in html


def test_html_escapes_values(ws):
    a, b = make_runs(ws, [({"name": "<b>x</b>"}, [0.5]), ({"name": "y"}, [0.4])])
    html = cmp.compare([a, b]).table_html()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_errors(sweep_runs, frame):
    with pytest.raises(ValidationError, match="No runs to compare") as info:
        cmp.compare([])
    assert info.value.hint
    with pytest.raises(ValidationError, match="No runs"):
        cmp.metric_bars(pd.DataFrame(columns=["run_id"]), "loss")
    with pytest.raises(ValidationError, match=r"Unknown metric 'rmse'.*known: acc, loss"):
        cmp.compare(frame, metric="rmse")
    with pytest.raises(ValidationError, match=r"Unknown param 'alpha'.*known: depth, lr, model"):
        cmp.metric_vs_param(frame, "loss", "alpha")
    with pytest.raises(ValidationError, match="Unknown column"):
        cmp.metric_vs_param(frame, "loss", "lr", color="nope")
    with pytest.raises(ValidationError, match="run_id"):
        cmp.compare(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValidationError, match="not a run"):
        cmp.compare([42])
    with pytest.raises(ValidationError, match="not runs"):
        cmp.compare(42)
    with pytest.raises(NotFoundError, match="No run 20000101-000000-00000000"):
        cmp.compare([*sweep_runs, "20000101-000000-00000000"])


# --------------------------------------------------------------------------------------------
# Reading at a glance: labels, default metric, which figures, axis ranges, table first


def test_runs_are_labelled_by_the_params_that_differ(sweep_runs, frame):
    labels = cmp.run_labels(frame)
    assert labels == dict(zip(sweep_runs, ["lr=0.01, model=rf", "lr=0.1, model=rf", "lr=0.5, model=gb",
                                           "lr=1, model=gb"], strict=True))  # fmt: skip
    result = cmp.compare(frame, metric="loss")
    assert result.labels == labels
    header = result.table_html().split("</thead>")[0]
    for run_id, label in labels.items():  # the label shows, the run id is the header's tooltip
        assert f'<th title="run {run_id}">{label}</th>' in header
    dims = [d.label for d in result.figures["parallel_coordinates"].data[0].dimensions]
    assert dims == ["lr", "model", "loss"]  # the same params that label the runs, no run ids


def test_run_labels_are_unique_and_fall_back_to_a_short_id(ws):
    same_a, same_b, other = make_runs(ws, [({"lr": 0.1, "d": 3}, [0.5]), ({"lr": 0.1, "d": 3}, [0.4]),
                                           ({"lr": 0.2, "d": 3}, [0.3])])  # fmt: skip
    labels = cmp.run_labels(cmp.runs_frame([same_a, same_b, other], ws=ws))
    assert labels[other] == "lr=0.2"  # d is the same everywhere: not in the label
    assert labels[same_a] == f"lr=0.1 ({same_a[-8:]})" and labels[same_b] == f"lr=0.1 ({same_b[-8:]})"
    assert len(set(labels.values())) == 3
    alike = cmp.run_labels(cmp.runs_frame([same_a, same_b], ws=ws))
    assert alike == {same_a: same_a[-8:], same_b: same_b[-8:]}  # nothing differs: the short ids
    fig = cmp.compare([same_a, same_b, other], ws=ws).figures["metric_bars"]
    assert set(fig.data[0].y) == set(labels.values()) and "run %{customdata}" in fig.data[0].hovertemplate


def test_default_metric_prefers_one_with_a_step_history(ws):
    # every run has the single-point metrics `acc` and `aaa`; only one run logged `loss` over steps
    ids = [make_run(ws, {"lr": 0.1}, [0.5, 0.4, 0.3], extra={"acc": 0.9, "aaa": 1.0}),
           make_run(ws, {"lr": 0.2}, [], extra={"acc": 0.8, "aaa": 2.0})]  # fmt: skip
    result = cmp.compare(ids)
    assert result.metric == "loss"
    assert "step_curves" in result.figures
    single = [make_run(ws, {"lr": 0.1}, [], extra={"b": 1.0, "a": 2.0}),
              make_run(ws, {"lr": 0.2}, [], extra={"b": 1.5})]  # fmt: skip
    assert cmp.compare(single).metric == "b"  # no history anywhere: the metric most runs have


def test_no_step_chart_when_every_run_has_one_step(ws):
    ids = make_runs(ws, [({"lr": 0.1}, [0.5]), ({"lr": 0.2}, [0.4]), ({"lr": 0.3}, [0.45])])
    result = cmp.compare(ids, metric="loss")
    assert "step_curves" not in result.figures
    assert "metric_bars" in result.figures and "parallel_coordinates" in result.figures


def test_metric_axis_shows_small_differences(ws):
    ids = make_runs(ws, [({"lr": 0.1}, [0.98]), ({"lr": 0.2}, [1.0])])
    fig = cmp.compare(ids, metric="loss").figures["metric_bars"]
    low, high = fig.layout.xaxis.range
    assert 0.9 < low < 0.98 and 1.0 < high < 1.1  # not from 0: the 0.02 gap fills the chart
    assert list(fig.data[0].x) == [0.98, 1.0]
    equal = cmp.metric_bars(make_runs(ws, [({"lr": 0.1}, [2.0]), ({"lr": 0.2}, [2.0])]), "loss")
    assert equal.layout.xaxis.range[0] < 2.0 < equal.layout.xaxis.range[1]


def test_table_comes_before_the_figures(sweep_runs, frame, tmp_path):
    result = cmp.compare(frame, metric="loss")
    report = result.to_html(tmp_path / "report.html").read_text()
    assert report.index('class="wb-compare-table"') < report.index('class="plotly-graph-div"')
    assert "position: sticky" in report  # the first column stays while the table scrolls sideways
    inline = result._repr_html_()
    assert inline.index("<table") < inline.index('class="plotly-graph-div"')
    bundles = result.mimebundles()
    assert "<table" in bundles[0]["text/html"] and all("application/vnd.plotly.v1+json" in b for b in bundles[1:])


def test_runs_by_id_is_a_parameterised_lookup(sweep_runs, monkeypatch):
    from workbench.runs import query

    def no_filter_strings(*args, **kwargs):
        raise AssertionError("runs are looked up by id, not through a filter string")

    monkeypatch.setattr(query, "runs", no_filter_strings)
    frame = query.runs_by_id([sweep_runs[2], sweep_runs[0], "20000101-000000-00000000", sweep_runs[2]])
    assert list(frame["run_id"]) == [sweep_runs[2], sweep_runs[0]]  # order kept, unknown left out
    assert frame["params.lr"].tolist() == [0.5, 0.01] and frame["metrics.loss"].tolist() == [0.3, 0.7]
    assert list(cmp.runs_frame(sweep_runs[::-1])["run_id"]) == sweep_runs[::-1]
    assert query.runs_by_id([]).empty
    with pytest.raises(InvalidNameError, match="Invalid run id"):
        query.runs_by_id(["x') or 1=1 --"])
    assert query.metric_point_counts(sweep_runs) == {"acc": 1, "loss": 3}

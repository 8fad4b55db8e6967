"""The REST API of the JupyterLab extension, served in-process by a real jupyter_server.

Data is real: snapshots registered through the library, runs written through the run lifecycle
and ingested like any runner does, and (in the slow test) notebooks executed by papermill in a
background worker started through the API itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pandas as pd
import pytest
from conftest import write_notebook
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]

API = "workbench/api"

NOTEBOOK = """
import workbench as wb
for step in range(epochs):
    wb.log_metric("loss", lr / (step + 1), step=step)
wb.log_metric("accuracy", 1.0 - lr)
"""


@pytest.fixture()
def jp_server_config() -> dict[str, Any]:
    """Enable the Workbench server extension (by module name, as the installed config does)."""
    return {"ServerApp": {"jpserver_extensions": {"workbench.jupyter": True}}}


def make_run(ws: Any, experiment: str, params: dict[str, Any], losses: list[float], status: str = "finished") -> str:
    """A run recorded through the real lifecycle (no kernel), indexed into the catalog."""
    from workbench.runs.ingest import ingest_runs
    from workbench.runs.lifecycle import create_run

    rec = create_run(ws, experiment=experiment, kind="notebook", params=params)
    for step, loss in enumerate(losses):
        rec.writer.emit("metric", key="loss", value=loss, step=step, at=None)
    if status == "queued":
        rec.writer.flush()
    else:
        rec.end(status)
    ingest_runs(ws, [rec.run_id])
    return rec.run_id


@pytest.fixture()
def data(ws: Any) -> dict[str, Any]:
    """Two versions of one snapshot and three runs in two experiments."""
    from workbench.api import snapshot

    frame = pd.DataFrame({"id": [1, 2, 3], "x": [0.5, 1.5, None], "label": ["a", "b", "c"]})
    snapshot("points", frame, description="three points")
    snapshot("points", pd.DataFrame({"id": [1, 2, 4], "x": [0.5, 2.5, 4.0], "label": ["a", "b", "d"]}))
    runs = [
        make_run(ws, "e", {"lr": 0.1, "model": "rf"}, [0.9, 0.5]),
        make_run(ws, "e", {"lr": 0.01, "model": "rf"}, [0.8, 0.7, 0.6]),
        make_run(ws, "other", {"depth": 3}, [1.0]),
    ]
    return {"runs": runs}


async def get_json(jp_fetch: Any, *parts: str, **kwargs: Any) -> Any:
    response = await jp_fetch(API, *parts, **kwargs)
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def post_json(jp_fetch: Any, *parts: str, body: dict[str, Any]) -> Any:
    response = await jp_fetch(API, *parts, method="POST", body=json.dumps(body))
    return response.code, json.loads(response.body)


async def error_of(jp_fetch: Any, *parts: str, method: str = "GET", body: Any = None, **kwargs: Any):
    """Status and JSON body of a request that must fail."""
    if method == "POST":
        kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body or {})
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(API, *parts, method=method, **kwargs)
    return info.value.code, json.loads(info.value.response.body)


# --------------------------------------------------------------------------------------------
# Snapshots


async def test_snapshot_list_and_detail(jp_fetch, data):
    listed = await get_json(jp_fetch, "snapshots")
    assert [s["ref"] for s in listed] == ["points@2"]
    every = await get_json(jp_fetch, "snapshots", params={"all_versions": "1"})
    assert [s["ref"] for s in every] == ["points@1", "points@2"]

    detail = await get_json(jp_fetch, "snapshots", "points@1")
    assert detail["row_count"] == 3 and detail["description"] == "three points"
    assert [c["name"] for c in detail["columns"]] == ["id", "x", "label"]
    assert detail["profile"]["x"]["null_count"] == 1
    latest = await get_json(jp_fetch, "snapshots", "points")
    assert latest["version"] == 2


async def test_snapshot_diff(jp_fetch, data):
    result = await get_json(jp_fetch, "snapshots", "diff", params={"a": "points@1", "b": "points@2", "key": "id"})
    assert result["a"] == "points@1" and result["b"] == "points@2"
    assert result["same_content"] is False
    assert (result["rows_added"], result["rows_removed"], result["rows_changed"]) == (1, 1, 1)
    assert result["examples"]["added"] == [{"id": 4}]


async def test_snapshot_errors(jp_fetch, data):
    code, body = await error_of(jp_fetch, "snapshots", "nope")
    assert code == 404 and "nope" in body["error"] and "hint" in body
    code, body = await error_of(jp_fetch, "snapshots", "points@9")
    assert code == 404 and "versions 1, 2" in body["hint"]
    code, body = await error_of(jp_fetch, "snapshots", "bad name!")
    assert code == 400 and body["error"]
    code, body = await error_of(jp_fetch, "snapshots", "diff", params={"a": "points@1", "b": "points@2", "key": "zz"})
    assert code == 400 and "zz" in body["error"]
    code, body = await error_of(jp_fetch, "snapshots", "diff", params={"a": "points@1"})
    assert code == 400


# --------------------------------------------------------------------------------------------
# Runs, experiments, parameters


async def test_runs_table(jp_fetch, data):
    rows = await get_json(jp_fetch, "runs")
    assert {r["run_id"] for r in rows} == set(data["runs"])
    by_id = {r["run_id"]: r for r in rows}
    first = by_id[data["runs"][0]]
    assert first["status"] == "finished" and first["experiment"] == "e"
    assert first["params.lr"] == 0.1 and first["metrics.loss"] == 0.5
    assert by_id[data["runs"][2]]["params.lr"] is None  # NaN in the frame -> null in JSON

    only_e = await get_json(jp_fetch, "runs", params={"experiment": "e", "order_by": "metrics.loss", "limit": "1"})
    assert [r["run_id"] for r in only_e] == [data["runs"][0]]
    filtered = await get_json(jp_fetch, "runs", params={"filter": "params.lr < 0.05"})
    assert [r["run_id"] for r in filtered] == [data["runs"][1]]


async def test_runs_bad_filter(jp_fetch, data):
    code, body = await error_of(jp_fetch, "runs", params={"filter": "metrics.loss <"})
    assert code == 400 and body["error"] and body["hint"]
    code, body = await error_of(jp_fetch, "runs", params={"limit": "many"})
    assert code == 400


async def test_run_detail_and_metric_history(jp_fetch, data):
    run_id = data["runs"][1]
    run = await get_json(jp_fetch, "runs", run_id)
    assert run["run_id"] == run_id and run["params"] == {"lr": 0.01, "model": "rf"}
    assert run["metrics"] == {"loss": 0.6}
    history = await get_json(jp_fetch, "runs", run_id, "metrics", "loss")
    assert history == [{"step": 0, "value": 0.8}, {"step": 1, "value": 0.7}, {"step": 2, "value": 0.6}]
    assert await get_json(jp_fetch, "runs", run_id, "metrics", "missing") == []


async def test_run_errors(jp_fetch, data):
    code, body = await error_of(jp_fetch, "runs", "20990101-000000-deadbeef")
    assert code == 404 and "20990101-000000-deadbeef" in body["error"]
    code, body = await error_of(jp_fetch, "runs", "not-a-run")
    assert code == 400 and "Invalid run id" in body["error"]
    # A run without an executed notebook (no kernel ran it) has nothing to show.
    code, body = await error_of(jp_fetch, "runs", data["runs"][0], "notebook")
    assert code == 400 and "no executed notebook" in body["error"]


async def test_cancel(jp_fetch, ws, data):
    queued = make_run(ws, "e", {"lr": 1.0}, [], status="queued")
    code, body = await post_json(jp_fetch, "runs", queued, "cancel", body={})
    assert code == 200 and body == {"run_id": queued, "cancelled": True}
    code, body = await post_json(jp_fetch, "runs", data["runs"][0], "cancel", body={})
    assert body["cancelled"] is False
    code, body = await error_of(jp_fetch, "runs", "..", "cancel", method="POST")
    assert code == 400 and "Invalid run id" in body["error"]


@pytest.mark.slow
async def test_rerun_in_the_background(jp_fetch, jp_root_dir, ws, data):
    """POST runs/<id>/rerun answers at once with a queued run that then executes the original's
    notebook content with its parameters; a run with nothing to repeat is a 400 naming why."""
    from workbench.runs.launch import run
    from workbench.runs.store import get_run

    notebook = write_notebook(jp_root_dir / "train.ipynb", "lr = 0.1\nepochs = 2", NOTEBOOK)
    original = run(str(notebook), {"lr": 0.5}, experiment="again", ws=ws)
    notebook.write_text(notebook.read_text().replace("lr = 0.1", "lr = 0.9"))  # the file moved on
    code, body = await post_json(jp_fetch, "runs", original.run_id, "rerun", body={})
    assert code == 201 and body["status"] in ("queued", "running") and body["run_id"] != original.run_id
    assert body["parent_run_id"] == original.run_id and body["params"]["lr"] == 0.5
    assert any("changed since run" in warning for warning in body["warnings"]), body["warnings"]
    deadline = time.monotonic() + 120
    while (again := get_run(body["run_id"], ws)).status not in ("finished", "failed", "killed"):
        assert time.monotonic() < deadline, again.status
        await asyncio.sleep(0.5)
    assert again.status == "finished" and again.metrics["accuracy"] == pytest.approx(0.5)
    code, answer = await error_of(jp_fetch, "runs", data["runs"][0], "rerun", method="POST")
    assert code == 400 and "interactive run" in answer["error"]


async def test_experiments(jp_fetch, data):
    experiments = await get_json(jp_fetch, "experiments")
    counts = {e["name"]: (e["runs"], e["finished"]) for e in experiments}
    assert counts == {"e": (2, 2), "other": (1, 1)}


async def test_notebook_parameters(jp_fetch, jp_root_dir, ws):
    write_notebook(jp_root_dir / "train.ipynb", "lr = 0.1  # learning rate\nepochs: int = 3", NOTEBOOK)
    body = await get_json(jp_fetch, "notebooks", "parameters", params={"path": "train.ipynb"})
    assert body["parameters"] == {
        "lr": {"default": 0.1, "type": "float", "help": "learning rate"},
        "epochs": {"default": 3, "type": "int", "help": ""},
    }
    code, body = await error_of(jp_fetch, "notebooks", "parameters", params={"path": "missing.ipynb"})
    assert code == 404
    code, body = await error_of(jp_fetch, "notebooks", "parameters", params={"path": "../../etc/passwd"})
    assert code == 400 and "outside" in body["error"]


async def test_start_run_refuses_paths_outside_root(jp_fetch, jp_root_dir, ws):
    for bad in ("../../etc/passwd", "/etc/passwd", "../outside.ipynb", "sub/../../x.ipynb"):
        code, body = await error_of(jp_fetch, "runs", method="POST", body={"notebook": bad})
        assert code == 400, bad
        assert body["error"], bad
    code, body = await error_of(jp_fetch, "sweeps", method="POST", body={"notebook": "../../etc/passwd", "grid": {}})
    assert code == 400
    code, body = await error_of(jp_fetch, "runs", method="POST", body="not json")
    assert code == 400 and "JSON" in body["error"]


async def test_start_run_validates_params_first(jp_fetch, jp_root_dir, ws):
    write_notebook(jp_root_dir / "train.ipynb", "lr = 0.1\nepochs = 2", NOTEBOOK)
    code, body = await error_of(jp_fetch, "runs", method="POST", body={"notebook": "train.ipynb", "params": {"lx": 1}})
    assert code == 400 and "lx" in body["error"]
    code, body = await error_of(
        jp_fetch, "sweeps", method="POST", body={"notebook": "train.ipynb", "grid": {"lr": ["fast"]}}
    )
    assert code == 400 and "lr" in body["error"]
    code, body = await error_of(jp_fetch, "sweeps", method="POST", body={"notebook": "train.ipynb", "grid": {}})
    assert code == 400
    for route, extra in (("runs", {}), ("sweeps", {"grid": {"lr": [0.1]}})):  # a kernel may be chosen, and checked
        code, body = await error_of(jp_fetch, route, method="POST",
                                    body={"notebook": "train.ipynb", "kernel": "nosuch", **extra})  # fmt: skip
        assert code == 400 and body.get("field") == "kernel" and "nosuch" in body["error"], body


async def wait_for(jp_fetch: Any, predicate: Any, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Poll GET runs until `predicate(rows)` holds, like the sidebar does."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await get_json(jp_fetch, "runs")
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; runs are {[(r['run_id'], r['status']) for r in rows]}")
        await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_start_run_and_sweep_with_kernels(jp_fetch, jp_root_dir, ws):
    """POST runs and POST sweeps execute real notebooks in the background; the UI polls them."""
    write_notebook(jp_root_dir / "train.ipynb", "lr = 0.1\nepochs = 2", NOTEBOOK)
    code, run = await post_json(
        jp_fetch, "runs",
        body={"notebook": "train.ipynb", "params": {"lr": "0.5"}, "experiment": "ui", "kernel": "python"},
    )
    assert code == 201 and run["status"] == "queued" and run["params"] == {"lr": 0.5, "epochs": 2}
    code, started = await post_json(
        jp_fetch, "sweeps", body={"notebook": "train.ipynb", "grid": {"epochs": [1, "3"]}, "parallel": 1,
                                  "experiment": "grid"},
    )  # fmt: skip
    assert code == 202 and started == {"sweep": "started", "runs": 2, "notebook": "train.ipynb"}

    def all_done(rows: list[dict[str, Any]]) -> bool:
        return len(rows) == 3 and all(r["status"] in ("finished", "failed", "killed") for r in rows)

    rows = await wait_for(jp_fetch, all_done)
    assert {r["status"] for r in rows} == {"finished"}, rows
    by_experiment = sorted((r["experiment"], r["params.epochs"], r["params.lr"]) for r in rows)
    assert by_experiment == [("grid", 1, 0.1), ("grid", 3, 0.1), ("ui", 2, 0.5)]  # given values, and the defaults
    mine = await get_json(jp_fetch, "runs", run["run_id"])
    assert mine["metrics"]["accuracy"] == pytest.approx(0.5)
    assert mine["kernel"] == "python3"  # the generic name resolved as jupyter_client does

    notebook = await get_json(jp_fetch, "runs", run["run_id"], "notebook")
    assert notebook["nbformat"] == 4
    assert any("lr = 0.5" in "".join(cell["source"]) for cell in notebook["cells"])


# --------------------------------------------------------------------------------------------
# Compare, models, serving


async def test_compare(jp_fetch, data):
    ids = ",".join(data["runs"][:2])
    body = await get_json(jp_fetch, "compare", params={"run_ids": ids, "metric": "loss"})
    assert body["run_ids"] == data["runs"][:2]
    assert [r["run_id"] for r in body["runs"]] == data["runs"][:2]
    assert {r["status"] for r in body["runs"]} == {"finished"} and all(r["experiment"] for r in body["runs"])
    keys = [row["key"] for row in body["table"]]
    assert "metrics.loss" in keys and all(set(data["runs"][:2]) <= set(row) for row in body["table"])
    assert body["figures"], body
    for figure in body["figures"].values():
        assert "data" in figure and "layout" in figure
    code, err = await error_of(jp_fetch, "compare", params={"run_ids": "bad"})
    assert code == 400


def model_run(accuracy: float) -> str:
    """A finished interactive run that logged a real scikit-learn model (no kernel needed)."""
    from sklearn.linear_model import LogisticRegression

    from workbench import tracking

    features = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(features, [0, 0, 1, 1])
    tracking.log_metric("accuracy", accuracy)
    tracking.log_model(model, "classifier", sample=features)
    run_id = tracking.active_run_id()
    tracking.end_run()
    return run_id


async def test_models_promote_and_rollback(jp_fetch, ws):
    assert await get_json(jp_fetch, "models") == []
    code, body = await error_of(jp_fetch, "models", "nothing")
    assert code == 404 and body["error"]

    first, second = model_run(0.8), model_run(0.9)
    for run_id, version in ((first, 1), (second, 2)):
        code, body = await post_json(
            jp_fetch, "models", "promote", body={"run_id": run_id, "model": "clf", "reason": "better"}
        )
        assert code == 200 and (body["name"], body["version"], body["alias"]) == ("clf", version, "production")
    models = await get_json(jp_fetch, "models")
    assert [(m["name"], m["latest_version"], m["aliases"]) for m in models] == [("clf", 2, {"production": 2})]
    detail = await get_json(jp_fetch, "models", "clf")
    assert sorted(v["version"] for v in detail["versions"]) == [1, 2]
    assert {v["run_id"] for v in detail["versions"]} == {first, second}

    code, body = await post_json(jp_fetch, "models", "clf", "rollback", body={"reason": "regression"})
    assert code == 200 and (body["version"], body["alias"]) == (1, "production")
    assert (await get_json(jp_fetch, "models"))[0]["aliases"] == {"production": 1}

    code, body = await error_of(jp_fetch, "models", "promote", method="POST", body={"run_id": "bad"})
    assert code == 400
    code, body = await error_of(jp_fetch, "models", "nope", "rollback", method="POST", body={})
    assert code == 404 and "nope" in body["error"]  # a model that does not exist: not found, not a bad request
    code, body = await error_of(jp_fetch, "models", "clf", "rollback", method="POST", body={"to": 7})
    assert code == 404 and "7" in body["error"]


async def test_serving_lists_the_model_servers_running_on_this_machine(jp_fetch, ws):
    """What the Models section shows: each running server's model reference, URL and process."""
    import os
    import socket

    from workbench.models.registry import promote
    from workbench.serving.server import serve_in_background

    assert await get_json(jp_fetch, "serving") == []
    promote(model_run(0.9), model="clf")
    with serve_in_background("clf@production", log_predictions=False) as server:
        (listed,) = await get_json(jp_fetch, "serving")
        assert {"ref", "url", "pid", "host", "started_at"} <= set(listed)
        assert (listed["ref"], listed["url"], listed["pid"]) == ("clf@production", server.url, os.getpid())
        assert listed["host"] == socket.gethostname() and listed["started_at"]
    assert await get_json(jp_fetch, "serving") == []  # a stopped server is no longer listed


# --------------------------------------------------------------------------------------------
# Authentication

ROUTES = [
    ("GET", "status"),
    ("GET", "snapshots"),
    ("GET", "snapshots/diff?a=x@1&b=x@2"),
    ("GET", "snapshots/x@1"),
    ("GET", "runs"),
    ("POST", "runs"),
    ("GET", "runs/20990101-000000-deadbeef"),
    ("GET", "runs/20990101-000000-deadbeef/notebook"),
    ("GET", "runs/20990101-000000-deadbeef/metrics/loss"),
    ("POST", "runs/20990101-000000-deadbeef/cancel"),
    ("POST", "runs/20990101-000000-deadbeef/rerun"),
    ("POST", "sweeps"),
    ("GET", "experiments"),
    ("GET", "notebooks/parameters?path=a.ipynb"),
    ("GET", "compare?run_ids=20990101-000000-deadbeef"),
    ("GET", "models"),
    ("GET", "models/m"),
    ("GET", "models/m/monitor"),
    ("POST", "models/promote"),
    ("POST", "models/m/rollback"),
    ("POST", "models/m/alias"),
    ("GET", "serving"),
]


async def test_every_route_requires_authentication(jp_fetch, jp_base_url, http_server_client, ws):
    from jupyter_server.utils import url_path_join

    for method, path in ROUTES:
        url = url_path_join(jp_base_url, API, path)
        with pytest.raises(HTTPClientError) as info:
            await http_server_client.fetch(url, method=method, body="{}" if method == "POST" else None)
        assert info.value.code == 403, (method, path, info.value.code)


def test_route_list_is_complete() -> None:
    """The authentication test above requests exactly the registered (method, route) pairs: each
    of its paths is routed as tornado routes it (the first pattern that matches), and every
    method of every registered handler is requested once."""
    from workbench.jupyter.handlers import ROUTES as REGISTERED

    registered = {(verb.upper(), pattern) for pattern, handler in REGISTERED
                  for verb in ("get", "post", "put", "patch", "delete") if verb in vars(handler)}  # fmt: skip

    def route_of(path: str) -> str:
        return next(pattern for pattern, _ in REGISTERED if re.fullmatch(pattern, path.split("?")[0]))

    requested = [(method, route_of(path)) for method, path in ROUTES]
    assert len(set(requested)) == len(requested), requested  # no route requested twice
    assert set(requested) == registered


async def test_runs_in_columns(jp_fetch, data):
    """`format=columns` (the Runs tab's form): the same table column by column, plus who started each
    run and when; filters, order and limit apply as to the records; an unknown format is a 400."""
    records = await get_json(jp_fetch, "runs")
    table = await get_json(jp_fetch, "runs", params={"format": "columns"})
    columns = table["columns"]
    assert table["rows"] == len(records) == 3 and all(len(values) == 3 for values in table["data"])
    for index, record in enumerate(records):
        for key, value in record.items():
            assert table["data"][columns.index(key)][index] == value, key
    creators = table["data"][columns.index("creator")]
    assert all(isinstance(c, str) and c for c in creators)
    started = table["data"][columns.index("started_at")]
    assert all(s is None or re.match(r"\d{4}-\d\d-\d\dT", s) for s in started)

    filtered = await get_json(jp_fetch, "runs", params={"format": "columns", "filter": "params.lr < 0.05"})
    assert filtered["data"][filtered["columns"].index("run_id")] == [data["runs"][1]]
    empty = await get_json(jp_fetch, "runs", params={"format": "columns", "filter": "params.lr > 5"})
    assert empty["rows"] == 0 and all(values == [] for values in empty["data"])
    code, body = await error_of(jp_fetch, "runs", params={"format": "csv"})
    assert code == 400 and "format" in body["error"]
    code, body = await error_of(jp_fetch, "runs", params={"format": "columns", "filter": "metrics.loss <"})
    assert code == 400 and body["error"]


async def test_runs_in_columns_with_floats_spelled_by_duckdb(jp_fetch, data, monkeypatch):
    """Past the size where DuckDB spells the float columns (wide tables) the answer is the same, and
    carries no ETag (hashing ~60 MB on the event loop for a client that bypasses the HTTP cache)."""
    from workbench.runs import query

    by_python = await get_json(jp_fetch, "runs", params={"format": "columns"})
    monkeypatch.setattr(query, "FLOAT_JSON_MIN_CELLS", 0)
    response = await jp_fetch(API, "runs", params={"format": "columns"})
    assert "Etag" not in response.headers
    assert json.loads(response.body) == by_python
    assert None in by_python["data"][by_python["columns"].index("params.lr")]  # a missing float is null

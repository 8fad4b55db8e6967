"""Attacks on the JupyterLab extension's REST API, each sent for real to an in-process jupyter_server.

Every client mistake or abuse must come back as a 4xx JSON error (never a 500 with a traceback),
and a refused sweep must queue nothing. The sweep caps live in the library, so they are also
checked through the Python API and the CLI.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import write_notebook
from tornado.httpclient import HTTPClientError

import workbench as wb
from workbench.catalog import connect
from workbench.sweeps import (
    DEFAULT_MAX_SWEEP_RUNS,
    ENV_MAX_PARALLEL,
    ENV_MAX_SWEEP_RUNS,
    Distribution,
    SweepLimits,
    sweep_limits,
)

pytest_plugins = ["pytest_jupyter.jupyter_server"]

API = "workbench/api"
RUN_ID = "20990101-000000-deadbeef"
NOTEBOOK_CODE = "import workbench as wb\nwb.log_metric('score', a + b)\n"
DEEP = 100_000
NESTED_BODIES = {
    "arrays": "[" * DEEP + "]" * DEEP,
    "objects": '{"a":' * DEEP + "1" + "}" * DEEP,
    "in a field": '{"params": {"a": ' + "[" * DEEP + "]" * DEEP + "}}",
}
POST_ROUTES = ["runs", "sweeps", "models/promote", "models/m/rollback", f"runs/{RUN_ID}/cancel"]


@pytest.fixture()
def jp_server_config() -> dict[str, Any]:
    """Enable the Workbench server extension, as tests/test_jupyter_api.py does."""
    return {"ServerApp": {"jpserver_extensions": {"workbench.jupyter": True}}}


@pytest.fixture()
def grid_notebook(jp_root_dir, ws):
    """A notebook with two integer parameters under the server root (never executed here)."""
    write_notebook(jp_root_dir / "grid.ipynb", "a = 0\nb = 0", NOTEBOOK_CODE)
    return "grid.ipynb"


async def refused(jp_fetch: Any, path: str, method: str = "GET", body: Any = None, **kwargs: Any):
    """Status and JSON body of a request that must fail with a 4xx JSON error."""
    if method == "POST":
        kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(API, *path.split("/"), method=method, **kwargs)
    code, response = info.value.code, info.value.response
    assert 400 <= code < 500, (path, code)
    assert response.headers["Content-Type"].startswith("application/json"), (path, response.headers)
    payload = json.loads(response.body)
    assert payload["error"], payload
    return code, payload


def catalog_counts(ws: Any) -> tuple[int, int]:
    """(runs, sweeps) recorded in the catalog."""
    with connect(ws) as con:
        runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
        sweeps = con.execute("SELECT count(*) FROM sweeps").fetchone()[0]
    return runs, sweeps


# --------------------------------------------------------------------------------------------
# Bodies


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("shape", list(NESTED_BODIES))
async def test_deeply_nested_body_is_a_400_on_every_post_route(jp_fetch, ws, route, shape):
    code, payload = await refused(jp_fetch, route, "POST", NESTED_BODIES[shape])
    assert code == 400 and "nested" in payload["error"], payload


async def test_moderately_nested_body_is_refused_before_anything_walks_it(jp_fetch, grid_notebook):
    # 900 levels parse fine with Python's json, then overflow the recursion of everything after it
    body = {"notebook": grid_notebook, "params": {"a": json.loads("[" * 900 + "]" * 900)}}
    code, payload = await refused(jp_fetch, "runs", "POST", body)
    assert code == 400 and "nested more than 32 levels" in payload["error"]


async def test_oversized_body_is_a_413(jp_fetch, ws):
    code, payload = await refused(jp_fetch, "runs", "POST", {"notebook": "x" * (2 * 1024 * 1024)})
    assert code == 413 and "limit" in payload["error"]


@pytest.mark.parametrize("body", ["[]", "1", '"text"', "{", b"\xff\xfe{}", "1" * 5000, '{"a": ' + "9" * 5000 + "}"])
async def test_malformed_bodies_are_400s(jp_fetch, ws, body):
    code, _ = await refused(jp_fetch, "runs", "POST", body)
    assert code == 400


@pytest.mark.parametrize(
    "route,body,word",
    [
        ("runs", {"notebook": "grid.ipynb", "experiment": ["x"]}, "experiment"),
        ("runs", {"notebook": "grid.ipynb", "params": [1]}, "params"),
        ("sweeps", {"notebook": "grid.ipynb", "grid": {"a": [1]}, "experiment": {"x": 1}}, "experiment"),
        ("models/promote", {"run_id": RUN_ID, "reason": {"x": 1}}, "reason"),
        ("models/promote", {"run_id": RUN_ID, "model": 5}, "model"),
        ("models/promote", {"run_id": RUN_ID, "alias": ["production"]}, "alias"),
        ("models/m/rollback", {"to": 10**30}, "to"),
        ("models/m/rollback", {"to": -1}, "to"),
        ("models/m/rollback", {"to": "2"}, "to"),
        ("models/m/rollback", {"to": 1.5}, "to"),
        ("models/m/rollback", {"reason": 7}, "reason"),
    ],
)
async def test_wrongly_typed_fields_are_400s_naming_the_field(jp_fetch, grid_notebook, route, body, word):
    code, payload = await refused(jp_fetch, route, "POST", body)
    assert code == 400 and word in payload["error"], payload


# --------------------------------------------------------------------------------------------
# Query arguments


@pytest.mark.parametrize("limit", ["99999999999999999999", "100001", "-1", "1.5", "1e3", "0x10", "٣", "2" * 5000])
async def test_runs_limit_out_of_range_is_a_400_naming_the_range(jp_fetch, ws, limit):
    code, payload = await refused(jp_fetch, "runs", params={"limit": limit})
    assert code == 400 and "limit" in payload["error"] and "0 to 100,000" in payload["error"], payload


async def test_runs_limit_within_range_still_works(jp_fetch, ws):
    for limit in ("0", "100000", " 7 "):
        response = await jp_fetch(API, "runs", params={"limit": limit})
        assert response.code == 200 and json.loads(response.body) == []


# --------------------------------------------------------------------------------------------
# Sweeps


async def test_a_100x100_grid_is_refused_and_queues_nothing(jp_fetch, ws, grid_notebook):
    grid = {"a": list(range(100)), "b": list(range(100))}
    code, payload = await refused(jp_fetch, "sweeps", "POST", {"notebook": grid_notebook, "grid": grid})
    assert code == 400
    assert "10,000 runs" in payload["error"] and f"{DEFAULT_MAX_SWEEP_RUNS:,}" in payload["error"]
    assert ENV_MAX_SWEEP_RUNS in payload["hint"] and "max_sweep_runs" in payload["hint"]
    assert catalog_counts(ws) == (0, 0)
    assert wb.runs().empty


@pytest.mark.parametrize("parallel", [10**9, 10**30, 0, -3, 2.5, "4", True])
async def test_absurd_or_invalid_parallel_is_a_400(jp_fetch, ws, grid_notebook, parallel):
    body = {"notebook": grid_notebook, "grid": {"a": [1, 2]}, "parallel": parallel}
    code, payload = await refused(jp_fetch, "sweeps", "POST", body)
    assert code == 400 and "parallel" in payload["error"], payload
    if parallel in (10**9, 10**30):
        assert f"limit of {sweep_limits(ws).max_parallel:,}" in payload["error"] and ENV_MAX_PARALLEL in payload["hint"]
    assert catalog_counts(ws) == (0, 0)


# --------------------------------------------------------------------------------------------
# The same caps through the Python API and the CLI


def test_python_api_refuses_oversized_sweeps_before_queueing(ws, notebook):
    nb = notebook("grid", "a = 0\nb = 0", NOTEBOOK_CODE)
    with pytest.raises(wb.ValidationError, match=r"1,001 runs, more than the limit of 1,000") as info:
        wb.sweep(nb, {"a": list(range(1001))})
    assert ENV_MAX_SWEEP_RUNS in info.value.hint
    with pytest.raises(wb.ValidationError, match="10,000 runs"):
        wb.sweep(nb, {"a": list(range(100)), "b": list(range(100))})
    with pytest.raises(wb.ValidationError, match="5,000 runs"):  # random samples are capped the same way
        wb.sweep(nb, {"a": Distribution("randint", 0, 9), "b": [1]}, random=5000)
    for parallel in (0, -1, 2.5, True, "2"):
        with pytest.raises(wb.ValidationError, match="parallel must be a whole number"):
            wb.sweep(nb, {"a": [1]}, parallel=parallel)
    with pytest.raises(wb.ValidationError, match="parallel=1,000,000,000 is more than the limit"):
        wb.sweep(nb, {"a": [1]}, parallel=10**9)
    assert catalog_counts(ws) == (0, 0)
    assert not ws.runs_dir.exists() or not any(ws.runs_dir.iterdir())


def test_random_sampling_of_a_huge_grid_is_allowed_and_cheap(ws):
    from workbench.sweeps import check_sweep_size, expand

    huge = {name: list(range(100)) for name in "abcd"}  # 10^8 combinations: never built
    assert check_sweep_size(huge, random=20, ws=ws) == 20
    drawn = expand(huge, random=20, seed=4)
    assert len(drawn) == 20 and len({tuple(d.values()) for d in drawn}) == 20


def test_caps_are_configurable_by_setting_and_environment(ws, monkeypatch):
    from workbench.sweeps import check_parallel, check_sweep_size

    monkeypatch.delenv(ENV_MAX_SWEEP_RUNS, raising=False)
    monkeypatch.delenv(ENV_MAX_PARALLEL, raising=False)
    ws.set_setting("max_sweep_runs", 2)
    ws.set_setting("max_parallel", 3)
    assert sweep_limits(ws) == SweepLimits(max_runs=2, max_parallel=3)
    with pytest.raises(wb.ValidationError, match="3 runs, more than the limit of 2"):
        check_sweep_size({"a": [1, 2, 3]}, ws=ws)
    with pytest.raises(wb.ValidationError, match="limit of 3 runs at a time"):
        check_parallel(4, ws)
    monkeypatch.setenv(ENV_MAX_SWEEP_RUNS, "5000")  # the environment wins over the setting
    monkeypatch.setenv(ENV_MAX_PARALLEL, "64")
    assert check_sweep_size({"a": list(range(50)), "b": list(range(50))}, ws=ws) == 2500
    assert check_parallel(64, ws) == 64
    for bad in ("0", "-5", "many", "2.5"):
        monkeypatch.setenv(ENV_MAX_SWEEP_RUNS, bad)
        with pytest.raises(wb.ValidationError, match=f"\\${ENV_MAX_SWEEP_RUNS} must be a positive whole number"):
            sweep_limits(ws)


def test_cli_refuses_a_sweep_past_the_cap_with_exit_2(cli, ws, notebook):
    nb = notebook("grid", "a = 0\nb = 0", NOTEBOOK_CODE)
    values = ",".join(str(n) for n in range(1001))
    proc = cli("sweep", str(nb), "--grid", f"a={values}")
    assert proc.returncode == 2, proc.stderr
    assert "1,001 runs, more than the limit of 1,000" in proc.stderr and ENV_MAX_SWEEP_RUNS in proc.stderr
    proc = cli("sweep", str(nb), "--grid", "a=1,2", "--parallel", "0")
    assert proc.returncode == 2 and "parallel must be a whole number" in proc.stderr, proc.stderr
    assert catalog_counts(ws) == (0, 0)

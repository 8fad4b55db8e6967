"""Sweeps with real kernels: local process pool with a failing run, and a Dask LocalCluster."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.sweeps import Distribution, expand, parse_grid_option

SCORE = (
    "import workbench as wb\n"
    "if x == 2:\n    raise RuntimeError('x=2 is not allowed')\n"
    "wb.log_metric('score', x * 10 + y)\n"
)


def test_grid_expansion_and_parsing():
    declared = {"lr": {"type": "float"}, "depth": {"type": "int"}, "name": {"type": "str"}}
    assert parse_grid_option("lr=0.01,0.1", declared) == ("lr", [0.01, 0.1])
    assert parse_grid_option("depth=3,5", declared) == ("depth", [3, 5])
    assert parse_grid_option("lr=loguniform(0.001, 1)", declared) == (
        "lr",
        Distribution("loguniform", 0.001, 1),
    )
    for bad, message in [("lr", "Invalid --grid"), ("depth=3,x", "expects int"), ("nope=1", "Unknown parameter"),
                         ("lr=uniform(2,1)", "low < high")]:  # fmt: skip
        with pytest.raises(wb.ValidationError, match=message):
            parse_grid_option(bad, declared)

    assert len(expand({"a": [1, 2, 3], "b": [1, 2]})) == 6
    sampled = expand({"a": [1, 2, 3], "b": [1, 2]}, random=4, seed=1)
    assert len(sampled) == 4 and len({tuple(s.items()) for s in sampled}) == 4
    assert expand({"a": [1, 2]}, random=4, seed=1) == expand({"a": [1, 2]}, random=2, seed=1)
    draws = expand({"lr": Distribution("loguniform", 0.001, 1.0), "k": [1]}, random=20, seed=3)
    assert len(draws) == 20 and all(0.001 <= d["lr"] <= 1.0 for d in draws)
    with pytest.raises(wb.ValidationError, match="need a random sweep"):
        expand({"lr": Distribution("uniform", 0, 1)})


@pytest.mark.slow
def test_local_sweep_runs_every_combination_and_survives_a_failure(ws, notebook):
    nb = notebook("score", "x = 0\ny = 0", SCORE)
    seen = []
    result = wb.sweep(nb, {"x": [1, 2, 3], "y": [0, 1]}, parallel=2, experiment="grid", on_progress=seen.append)

    assert len(result.run_ids) == 6
    assert sorted(result.statuses.values()) == ["failed", "failed"] + ["finished"] * 4
    assert seen[-1] == {"total": 6, "finished": 4, "failed": 2, "running": 0}
    table = result.table("score", ascending=False)
    assert table["metrics.score"].tolist()[:4] == [31, 30, 11, 10]
    assert set(table["status"]) == {"finished", "failed"}
    failed = wb.get_run(result.failed[0])
    assert failed.error["ename"] == "RuntimeError" and failed.sweep_id == result.sweep_id
    assert failed.experiment == "grid" and failed.tags["sweep"] == result.sweep_id


@pytest.mark.slow
def test_sweep_on_a_dask_local_cluster(ws, notebook):
    from dask.distributed import LocalCluster

    nb = notebook("score", "x = 0\ny = 0", SCORE)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = wb.sweep(nb, {"x": [1, 3], "y": [5]}, executor="dask", scheduler=cluster.scheduler_address)

    assert result.statuses and set(result.statuses.values()) == {"finished"}
    assert sorted(wb.get_run(r).metrics["score"] for r in result.run_ids) == [15, 35]


def test_sweep_validates_every_parameter_set_before_recording_anything(ws, notebook):
    nb = notebook("score", "x = 0\ny = 0", SCORE)
    with pytest.raises(wb.ValidationError, match="expects int"):
        wb.sweep(nb, {"x": [1, "two"]})
    with pytest.raises(wb.ValidationError, match="scheduler"):
        wb.sweep(nb, {"x": [1]}, executor="dask")
    assert not ws.runs_dir.exists() or not any(ws.runs_dir.iterdir())


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_an_unreachable_dask_scheduler_is_a_quick_error_with_nothing_queued(ws, notebook, cli, monkeypatch):
    import time

    from workbench.sweep_executors import DEFAULT_DASK_TIMEOUT, ENV_DASK_TIMEOUT, dask_timeout

    monkeypatch.delenv(ENV_DASK_TIMEOUT, raising=False)
    assert dask_timeout(ws) == DEFAULT_DASK_TIMEOUT == 10  # the wait a user gets by default
    ws.set_setting("dask_connect_timeout", 2)  # here: the same error, bounded by the setting, in less time
    nb = notebook("score", "x = 0\ny = 0", SCORE)
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.monotonic()
    proc = cli("sweep", str(nb), "--grid", "x=1,2", "--executor", "dask", "--scheduler", address, timeout=60)

    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - started < 2 + 10  # the setting's wait, plus the CLI's start
    assert f"Cannot reach the Dask scheduler at {address}" in proc.stderr and "Traceback" not in proc.stderr
    assert wb.runs().empty  # no run queued, none left to be reaped as killed later


@pytest.mark.slow
def test_runs_that_never_started_end_at_once_when_the_dask_scheduler_goes_away(ws, notebook):
    import threading

    from dask.distributed import LocalCluster

    nb = notebook("score", "x = 0\ny = 0", SCORE)
    with LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster:  # tasks wait for a worker
        address = cluster.scheduler_address
        closing: list[threading.Timer] = []

        def on_progress(state: dict[str, int]) -> None:
            if not closing:  # every run is queued and submitted: now the scheduler goes away
                closing.append(threading.Timer(0.5, cluster.close))
                closing[0].start()

        result = wb.sweep(nb, {"x": [1, 3]}, executor="dask", scheduler=address, on_progress=on_progress)

    assert result.statuses == {run_id: "killed" for run_id in result.run_ids}
    for run_id in result.run_ids:
        run = wb.get_run(run_id)  # ended now, not left queued until the 30 s reaping
        assert run.status == "killed" and run.started_at is None
        assert run.error["ename"] == "SchedulerLost" and address in run.error["evalue"]


def test_sweep_kernel_option_is_checked_before_anything_is_queued(ws, notebook, cli):
    nb = notebook("score", "x = 0\ny = 0", SCORE)
    proc = cli("sweep", str(nb), "--grid", "x=1,2", "--kernel", "no-such-kernel")
    assert proc.returncode == 2 and "Kernel 'no-such-kernel' is not installed" in proc.stderr, proc.stderr
    assert wb.runs().empty

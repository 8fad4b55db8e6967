"""The team server under load (issue 18), as real processes on loopback (`team_load`).

Client processes of one machine (one spool, as in a sweep) each log a run of step metrics through
the remote path (`wb.connect`, `wb.log_metric`, `wb.end_run` waiting for the sync) while another
process lists runs (`GET /api/v1/runs`) every 100 ms. Checked: every point is in the server's catalog
exactly once, no process reports an error, the server logs none, and the reader's latency is printed
(p50/p99/max, not asserted: the machine's load decides it). Then the same with the server killed (-9)
while the clients log and restarted on the same port: the senders resume from the spool, nothing is
lost or doubled, and `workbench doctor` is clean once the server stops.

Here 16 clients x 500 metrics (the same paths, half the processes: most of the time is their start);
`python -m benchmarks team` runs the first with 32 x 1,000 for its read-latency figure. Last, in
process: the server's reads do not index runs, its own indexing pass does (`indexing_in_background`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import VENV_BIN
from team_load import EXPERIMENT, clean_env, finish, log_while_reading, start_clients
from test_team_logging import start_server
from test_team_server import Server, add_user

pytestmark = pytest.mark.slow

#: Clients and points per client here; `python -m benchmarks team` runs 32 x 1,000 for its figure.
CLIENTS = 16
METRICS = 500

# Every point of every run in the catalog itself (the server stopped): count and distinct steps per run.
COUNT = r"""
import json, sys
import duckdb

con = duckdb.connect(sys.argv[1], read_only=True)
rows = con.execute("SELECT run_id, count(*), count(DISTINCT step), min(step), max(step) FROM run_metrics "
                   "WHERE key = 'loss' GROUP BY run_id").fetchall()
summary = dict(con.execute("SELECT run_id, count FROM run_metric_summary WHERE key = 'loss'").fetchall())
status = dict(con.execute("SELECT run_id, status FROM runs").fetchall())
print(json.dumps({r[0]: {"points": r[1], "steps": r[2], "first": r[3], "last": r[4], "summary": summary.get(r[0]),
                         "status": status.get(r[0])} for r in rows}))
"""


def new_server(tmp: Path) -> Server:
    home = tmp / "server" / ".workbench"
    home.parent.mkdir(parents=True)
    env = clean_env()
    subprocess.run([str(VENV_BIN / "workbench"), "--home", str(home), "init"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    tokens = {"ed": add_user(home, "ed", "editor"), "vera": add_user(home, "vera", "viewer")}
    server = start_server(home)
    server.tokens = tokens
    return server


def wait_until_logging(server: Server, clients: list[subprocess.Popen], timeout: float = 60) -> list[dict]:
    """Until the server has started receiving runs (some of the clients' points arrived): its runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.client("vera") as http:
            runs = http.get("/api/v1/runs", params={"experiment": EXPERIMENT}).json()
        if len(runs) >= CLIENTS // 2:
            return runs
        time.sleep(0.1)
    raise AssertionError(f"the clients' runs did not reach the server within {timeout:.0f} s")


def catalog_counts(server: Server) -> dict[str, dict]:
    env = clean_env()
    proc = subprocess.run([sys.executable, "-c", COUNT, str(server.home / "catalog.duckdb")], capture_output=True,
                          text=True, env=env, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_every_point_once(server: Server, outcomes: dict[str, dict], metrics: int) -> None:
    assert len(outcomes) == CLIENTS
    unsynced = {run_id: o for run_id, o in outcomes.items() if o["state"] != "synced"}
    assert not unsynced, f"runs not synced at the end: {unsynced}"
    counts = catalog_counts(server)
    expected = {"points": metrics, "steps": metrics, "first": 0, "last": metrics - 1, "summary": metrics,
                "status": "finished"}  # fmt: skip
    wrong = {run_id: counts.get(run_id) for run_id in outcomes if counts.get(run_id) != expected}
    assert not wrong, f"runs whose points are not all there once (expected {expected}): {wrong}"


def assert_clean_log(server: Server) -> None:
    text = server.log.read_text()
    assert not any(word in text for word in ("Traceback", "ERROR", "Exception")), text[-4000:]


def doctor(server: Server) -> list[dict]:
    env = clean_env()
    proc = subprocess.run([str(VENV_BIN / "workbench"), "--home", str(server.home), "doctor", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_clients_log_while_a_reader_polls(tmp_path):
    server = new_server(tmp_path)
    try:
        load = log_while_reading(server.url, server.tokens["vera"], server.tokens["ed"], tmp_path, CLIENTS, METRICS)
    finally:
        server.stop()
    print(f"\n{METRICS:,} metrics each, {load.describe()}")
    assert len(load.latencies) >= 10
    assert_every_point_once(server, load.outcomes, METRICS)
    assert_clean_log(server)
    assert all(check["severity"] == "ok" for check in doctor(server))


def test_server_killed_while_clients_log(tmp_path):
    """kill -9 mid-sweep, restart on the same port: the senders resume from the spool, nothing is lost
    or doubled, and the workspace is clean."""
    server = new_server(tmp_path)
    port = int(server.url.rsplit(":", 1)[1])
    pause = 3.0 / (METRICS // 100)  # ~3 s of logging each
    clients = start_clients(server.url, server.tokens["ed"], tmp_path / "machine", CLIENTS, METRICS, pause)
    try:
        at_kill = wait_until_logging(server, clients)
        assert any(run["status"] == "running" for run in at_kill), at_kill
        alive = sum(p.poll() is None for p in clients)
        assert alive >= CLIENTS // 2, f"only {alive} clients were still logging when the server was killed"
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        time.sleep(1.0)  # the clients log on, into the spool; their senders retry
        assert any(p.poll() is None for p in clients), "the clients had all ended before the server came back"
        restarted = start_server(server.home, port)
        restarted.tokens = server.tokens
        server = restarted
        outcomes = finish(clients)
    finally:
        for proc in clients:
            if proc.poll() is None:
                proc.kill()
        server.stop()
    assert_every_point_once(server, outcomes, METRICS)
    assert_clean_log(server)
    checks = doctor(server)
    assert all(check["severity"] == "ok" for check in checks), checks


def test_the_server_indexes_what_its_reads_no_longer_do(ws):
    """In the server's mode (`indexing_in_background`) a read does not index a pending run (it never
    writes or waits for the writers); the server's own pass does, within its interval."""
    from workbench.catalog.connection import hold, release
    from workbench.runs.events import now_iso
    from workbench.runs.ids import new_run_id
    from workbench.runs.ingest import writer_for
    from workbench.runs.query import runs
    from workbench.server.serve import indexing_in_background

    def write_run() -> str:
        run_id = new_run_id()
        writer = writer_for(ws, run_id)  # events and a pending marker, as a run on the server's machine leaves
        writer.emit("start", run_id=run_id, experiment="local", kind="interactive", status="running", creator="me",
                    created_at=now_iso())  # fmt: skip
        writer.close()
        return run_id

    def listed() -> list[str]:
        return sorted(runs(experiment="local", ws=ws)["run_id"])

    early = write_run()
    hold(ws, holder="this test")
    try:
        with indexing_in_background(ws, interval_s=3600):
            assert listed() == [early]  # the first pass, before any read
            late = write_run()
            assert listed() == [early]  # the read did not index it (and the next pass is an hour away)
        with indexing_in_background(ws, interval_s=0.1):
            assert listed() == sorted([early, late])
            latest = write_run()
            deadline = time.monotonic() + 10
            while latest not in listed():
                assert time.monotonic() < deadline, "the server's pass did not index the run"
                time.sleep(0.05)
    finally:
        release(ws)


SLOW_TRAIN = """
import time
import workbench as wb
for step in range(steps):
    wb.log_metric("loss", lr / (step + 1), step=step)
    time.sleep(0.1)
print("done")
"""


def test_server_killed_mid_sweep(tmp_path):
    """A real `workbench sweep` from a client: kill -9 the server while its runs log, restart it on the
    same port; the runs finish syncing from their spools, every step arrives once, the sweep is
    recorded as finished, and doctor is clean."""
    from conftest import write_notebook
    from test_team_logging import client_env

    server = new_server(tmp_path)
    port = int(server.url.rsplit(":", 1)[1])
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    nb = write_notebook(laptop / "train.ipynb", "lr = 0.1\nsteps = 60", SLOW_TRAIN)
    env = {**client_env(laptop, server.url, server.tokens["ed"]), "WORKBENCH_SYNC_TIMEOUT": "120"}
    sweep = subprocess.Popen([str(VENV_BIN / "workbench"), "sweep", str(nb), "--grid", "lr=0.1,0.2", "--parallel",
                              "2", "--experiment", "killed", "--json"], cwd=laptop, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:  # until both runs are logging on the server
            with server.client("vera") as http:
                runs = http.get("/api/v1/runs", params={"experiment": "killed"}).json()
            if len(runs) == 2 and all(r["status"] == "running" for r in runs):
                break
            assert sweep.poll() is None and time.monotonic() < deadline, (runs, sweep.poll())
            time.sleep(0.2)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        time.sleep(2.0)  # the notebooks log on, into the spool
        restarted = start_server(server.home, port)
        restarted.tokens = server.tokens
        server = restarted
        out, err = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, out + err
        result = json.loads(out)
        with server.client("vera") as http:
            for row in result["runs"]:
                run = http.get(f"/api/v1/runs/{row['run_id']}").json()
                history = http.get("/api/v1/metric-history", params={"key": "loss", "run_id": row["run_id"]}).json()
                assert run["status"] == "finished" and run["creator"] == "ed", run
                assert history["step"] == list(range(60)), history["step"]  # every step, once
            recorded = http.get(f"/api/v1/sweeps/{result['sweep_id']}").json()
        assert recorded["status"] == "finished", recorded
    finally:
        if sweep.poll() is None:
            sweep.kill()
        server.stop()
    assert_clean_log(server)
    assert all(check["severity"] == "ok" for check in doctor(server))

"""The team server under load (issue 18), as real processes on loopback.

32 client processes of one machine (one spool, as in a sweep) each log a run of step metrics through
the remote path (`wb.connect`, `wb.log_metric`, `wb.end_run` waiting for the sync) while another
process lists runs (`GET /api/v1/runs`) every 100 ms. Checked: every point is in the server's catalog
exactly once, no process reports an error, the server logs none, and the reader's latency is printed
(p50/p99/max, not asserted: the machine's load decides it). Then the same with the server killed (-9)
while the clients log and restarted on the same port: the senders resume from the spool, nothing is
lost or doubled, and `workbench doctor` is clean once the server stops.

Both tests run the full 32 clients x 1,000 metrics (about 45 s together on 2 cores); `python -m benchmarks
team` repeats the first as its read-latency figure.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import VENV_BIN
from test_team_logging import client_env, start_server
from test_team_server import Server, add_user

pytestmark = pytest.mark.slow

CLIENTS = 32
METRICS = 1000

# A client: connects, logs METRICS step metrics (sleeping PAUSE s every 100), ends the run and waits for
# the sync. Prints the run id at once, then {"state", "seconds"} at the end.
CLIENT = r"""
import json, os, sys, time
import workbench as wb

metrics, pause = int(os.environ["METRICS"]), float(os.environ["PAUSE"])
wb.connect(os.environ["CONNECT_URL"], token=os.environ["CONNECT_TOKEN"])
wb.set_experiment("load")
wb.log_param("client", int(os.environ["CLIENT"]))
run_id = wb.tracking.active_run_id()
print(run_id, flush=True)
started = time.perf_counter()
for step in range(metrics):
    wb.log_metric("loss", 1.0 / (step + 1), step=step)
    if pause and step % 100 == 99:
        time.sleep(pause)
wb.end_run()
print(json.dumps({**wb.sync_state(run_id), "seconds": time.perf_counter() - started}), flush=True)
"""

# The reader: GET /api/v1/runs every 100 ms until the file argv[1] exists; prints its latencies (s) and errors.
READER = r"""
import json, os, sys, time
import httpx

stop, latencies, errors = sys.argv[1], [], []
with httpx.Client(base_url=os.environ["WB_URL"], timeout=30,
                  headers={"Authorization": "Bearer " + os.environ["WB_TOKEN"]}) as http:
    while not os.path.exists(stop):
        started = time.perf_counter()
        try:
            response = http.get("/api/v1/runs", params={"experiment": "load"})
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
        except httpx.HTTPError as exc:
            errors.append(repr(exc))
        latencies.append(time.perf_counter() - started)
        time.sleep(max(0.0, 0.1 - (time.perf_counter() - started)))
print(json.dumps({"latencies": latencies, "errors": errors}))
"""

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
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    subprocess.run([str(VENV_BIN / "workbench"), "--home", str(home), "init"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    tokens = {"ed": add_user(home, "ed", "editor"), "vera": add_user(home, "vera", "viewer")}
    server = start_server(home)
    server.tokens = tokens
    return server


def start_clients(server: Server, machine: Path, metrics: int, pause: float) -> list[subprocess.Popen]:
    """CLIENTS logging processes on one machine (`machine`: their shared config and spool folders)."""
    machine.mkdir(parents=True, exist_ok=True)
    script = machine / "train.py"
    script.write_text(CLIENT)
    env = client_env(machine, WORKBENCH_SYNC_TIMEOUT="120", CONNECT_URL=server.url, CONNECT_TOKEN=server.tokens["ed"],
                     METRICS=str(metrics), PAUSE=str(pause))  # fmt: skip
    return [
        subprocess.Popen(
            [sys.executable, str(script)],
            cwd=machine,
            env={**env, "CLIENT": str(i)},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for i in range(CLIENTS)
    ]


def finish(clients: list[subprocess.Popen], timeout: float = 180) -> dict[str, dict]:
    """Each client's outcome by run id, once all have exited; fails on an exit code or anything on stderr."""
    deadline = time.monotonic() + timeout
    outcomes = {}
    for proc in clients:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert proc.returncode == 0 and not err.strip(), f"client exited {proc.returncode}:\n{out}\n{err}"
        run_id, result = out.strip().splitlines()
        outcomes[run_id] = json.loads(result)
    return outcomes


def wait_until_logging(server: Server, clients: list[subprocess.Popen], timeout: float = 60) -> list[dict]:
    """Until the server has started receiving runs (some of the clients' points arrived): its runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.client("vera") as http:
            runs = http.get("/api/v1/runs", params={"experiment": "load"}).json()
        if len(runs) >= CLIENTS // 2:
            return runs
        time.sleep(0.1)
    raise AssertionError("the clients' runs did not reach the server within 60 s")


def catalog_counts(server: Server) -> dict[str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    proc = subprocess.run([str(VENV_BIN / "workbench"), "--home", str(server.home), "doctor", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_32_clients_log_while_a_reader_polls(tmp_path):
    server = new_server(tmp_path)
    stop = tmp_path / "stop-reading"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(stop)], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=dict(os.environ, WB_URL=server.url,
                                                               WB_TOKEN=server.tokens["vera"]))  # fmt: skip
    started = time.perf_counter()
    try:
        clients = start_clients(server, tmp_path / "machine", METRICS, pause=0.0)
        outcomes = finish(clients)
        seconds = time.perf_counter() - started
    finally:
        stop.touch()
        read, err = reader.communicate(timeout=60)
        server.stop()
    assert reader.returncode == 0 and not err.strip(), err
    polled = json.loads(read)
    latencies = polled["latencies"]
    print(f"\n{CLIENTS} clients x {METRICS:,} metrics: all synced in {seconds:.1f} s; the reader's "
          f"GET /api/v1/runs every 100 ms ({len(latencies)} requests): p50 {statistics.median(latencies) * 1000:.0f} "
          f"ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")  # fmt: skip
    assert polled["errors"] == []
    assert len(latencies) >= 10
    assert_every_point_once(server, outcomes, METRICS)
    assert_clean_log(server)
    assert all(check["severity"] == "ok" for check in doctor(server))


def test_server_killed_while_32_clients_log(tmp_path):
    """kill -9 mid-sweep, restart on the same port: the senders resume from the spool, nothing is lost
    or doubled, and the workspace is clean."""
    server = new_server(tmp_path)
    port = int(server.url.rsplit(":", 1)[1])
    clients = start_clients(server, tmp_path / "machine", METRICS, pause=0.3)  # ~3 s of logging each
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

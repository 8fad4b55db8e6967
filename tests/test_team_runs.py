"""Tracked notebook runs and Dask sweeps against a team server (issue 18), as real processes on loopback.

`workbench run` with a server configured executes the notebook on the client, logs it into the
server's spool and ships it (`workbench.remote.runs.run_place`); a Dask sweep's tasks carry the
notebook content, parameters and the server URL/token, so workers need no workspace folder at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import VENV_BIN, write_notebook
from test_team_logging import client_env, start_server
from test_team_server import add_user, free_port

pytestmark = pytest.mark.slow

PARAMS = "lr = 0.1\nepochs = 2"
TRAIN = """
import workbench as wb
for step in range(epochs):
    wb.log_metric("loss", lr / (step + 1), step=step)
wb.log_metric("score", lr * 10)
wb.log_text("trained", "notes.txt")
print("done")
"""


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    home = tmp_path_factory.mktemp("team-runs") / ".workbench"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    subprocess.run([str(VENV_BIN / "workbench"), "--home", str(home), "init"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    tokens = {name: add_user(home, name, role) for name, role in {"ed": "editor", "vera": "viewer"}.items()}
    server = start_server(home)
    server.tokens = tokens
    yield server
    server.stop()


def test_workbench_run_is_logged_to_the_server(team, tmp_path):
    client = tmp_path / "laptop"
    client.mkdir()
    nb = write_notebook(client / "train.ipynb", PARAMS, TRAIN)
    env = client_env(client, team.url, team.tokens["ed"])
    done = subprocess.run([str(VENV_BIN / "workbench"), "run", str(nb), "-p", "lr=0.5", "--json"], cwd=client,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    run_id = result["run_id"]
    assert result["status"] == "finished", result
    assert result["metrics"]["score"] == pytest.approx(5.0)
    assert not (client / ".workbench").exists()  # nothing local but the spool

    with team.client("ed") as http:
        rows = http.get("/api/v1/runs").json()
        [row] = [r for r in rows if r["run_id"] == run_id]
        run = http.get(f"/api/v1/runs/{run_id}").json()
        assert http.head(f"/api/v1/blobs/{run['output_blob']}").status_code == 200
        assert http.head(f"/api/v1/blobs/{run['notebook_blob']}").status_code == 200
    assert row["status"] == "finished"
    assert run["creator"] == "ed" and run["kind"] == "notebook"
    assert run["params"] == {"lr": 0.5, "epochs": 2}
    assert run["metrics"] == {"loss": pytest.approx(0.25), "score": pytest.approx(5.0)}
    assert {a["name"] for a in run["artifacts"]} >= {"notes.txt", "stdout"}
    assert (team.home / "blobs" / run["output_blob"][:2] / run["output_blob"]).is_file()


def test_a_viewer_cannot_run(team, tmp_path):
    nb = write_notebook(tmp_path / "train.ipynb", PARAMS, TRAIN)
    env = client_env(tmp_path, team.url, team.tokens["vera"])
    done = subprocess.run([str(VENV_BIN / "workbench"), "run", str(nb)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert "editor" in done.stdout + done.stderr
    assert not list((tmp_path / "cache").rglob("events.jsonl"))


def _dask(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([str(VENV_BIN / "dask"), *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path):
    """`dask scheduler` + `dask worker` processes on loopback; the workers in an empty folder of their
    own, with their own HOME and no WORKBENCH_* variable: they cannot know the server's workspace."""
    empty, home = tmp_path / "empty", tmp_path / "workerhome"
    empty.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items()  # XDG_RUNTIME_DIR kept: the session's fork servers
           if not k.startswith("WORKBENCH_") and k not in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME")}  # fmt: skip
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    address = f"tcp://127.0.0.1:{free_port()}"
    scheduler = _dask(["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
                      empty, env, tmp_path / "scheduler.log")  # fmt: skip
    worker = _dask(["worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
                    "--local-directory", str(empty / "dask")], empty, env, tmp_path / "worker.log")  # fmt: skip
    try:
        from dask.distributed import Client

        deadline = time.monotonic() + 60
        with Client(address, timeout="30s") as client:
            while len(client.scheduler_info()["workers"]) < 2:
                alive = worker.poll() is None and time.monotonic() < deadline
                assert alive, (tmp_path / "worker.log").read_text()
                time.sleep(0.2)
        yield address, empty, home
    finally:
        _stop(worker)
        _stop(scheduler)


def test_a_dask_sweep_lands_on_the_server_from_workers_without_its_folder(team, tmp_path, cluster):
    address, empty, worker_home = cluster
    client = tmp_path / "laptop"
    client.mkdir()
    # The notebook also reads a snapshot of the server: the worker's kernel reads it from the server.
    with team.client("ed") as http:
        answer = http.post("/api/v1/snapshots/tiny", content=b"x,y\n1,2\n3,4\n5,6\n",
                           headers={"Content-Type": "text/csv"})  # fmt: skip
    assert answer.status_code in (200, 201), answer.text
    reading = TRAIN + '\nwb.log_metric("rows", len(wb.load_snapshot("tiny")))\n'
    nb = write_notebook(client / "train.ipynb", PARAMS, reading)
    before = {p.relative_to(team.home) for p in team.home.rglob("*")}
    env = client_env(client, team.url, team.tokens["ed"])
    done = subprocess.run([str(VENV_BIN / "workbench"), "sweep", str(nb), "--grid", "lr=0.1,0.2,0.3", "--executor",
                           "dask", "--scheduler", address, "--json"], cwd=client, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr + (tmp_path / "worker.log").read_text()
    result = json.loads(done.stdout)
    run_ids = [row["run_id"] for row in result["runs"]]
    assert len(run_ids) == 3 and all(row["status"] == "finished" for row in result["runs"]), result

    with team.client("ed") as http:
        runs = [http.get(f"/api/v1/runs/{run_id}").json() for run_id in run_ids]
    assert sorted(r["params"]["lr"] for r in runs) == [0.1, 0.2, 0.3]
    for run in runs:
        lr = run["params"]["lr"]
        assert run["status"] == "finished" and run["creator"] == "ed"
        assert run["sweep_id"] == result["sweep_id"] and run["tags"]["sweep"] == result["sweep_id"]
        assert run["metrics"] == {"loss": pytest.approx(lr / 2), "score": pytest.approx(lr * 10), "rows": 3}
        assert run["inputs"] == ["tiny@1"]
        assert run["output_blob"] and (team.home / "blobs" / run["output_blob"][:2] / run["output_blob"]).is_file()

    # The runs executed in the workers' spool (their HOME), not in the server's folder nor the laptop's.
    spooled = {p.name for p in (worker_home / ".cache" / "workbench" / "spool").glob("*/runs/*")}
    assert set(run_ids) <= spooled
    assert not list((client / "cache").rglob("events.jsonl"))
    created = {p.relative_to(team.home) for p in team.home.rglob("*")} - before
    executed_here = [p for p in created if p.name in ("source.ipynb", "request.json", "kernel.log", "stdout.txt")]
    assert not executed_here, executed_here  # what executing a run writes: only the workers wrote it
    assert not [p for p in empty.iterdir() if p.name != "dask"]  # each task's temporary folder is gone


def test_a_run_whose_server_is_down_ends_syncing(team, tmp_path):
    nb = write_notebook(tmp_path / "train.ipynb", PARAMS, TRAIN)
    env = client_env(tmp_path, f"http://127.0.0.1:{free_port()}", team.tokens["ed"], WORKBENCH_SYNC_TIMEOUT="1")
    done = subprocess.run([str(VENV_BIN / "workbench"), "run", str(nb), "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "syncing" and result["metrics"]["score"] == pytest.approx(1.0)
    assert "still syncing" in done.stderr


def test_a_local_sweep_against_the_server(team, tmp_path):
    nb = write_notebook(tmp_path / "train.ipynb", PARAMS, TRAIN)
    env = client_env(tmp_path, team.url, team.tokens["ed"])
    done = subprocess.run([str(VENV_BIN / "workbench"), "sweep", str(nb), "--grid", "lr=0.1,0.2", "--parallel", "2",
                           "--metric", "score", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert [row["metrics.score"] for row in result["runs"]] == [pytest.approx(1.0), pytest.approx(2.0)]
    with team.client("ed") as http:
        for row in result["runs"]:
            run = http.get(f"/api/v1/runs/{row['run_id']}").json()
            assert run["status"] == "finished" and run["sweep_id"] == result["sweep_id"] and run["creator"] == "ed"

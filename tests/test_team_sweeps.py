"""Sweeps and reruns against a team server (issue 18), as real server and client processes on loopback.

A client's sweep is recorded on the server (`PUT /sweeps/{id}`: before its first run, again at its end)
with its runs; `workbench sweep --resume` asks the server which parameter sets finished and runs only
the others; `workbench rerun` on another machine reruns a run the server has (its notebook content,
the parameters it was given, the snapshot versions it read) and logs the rerun there.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import VENV_BIN, write_notebook
from test_team_logging import client_env
from test_team_server import add_user, start_server

import workbench as wb

pytestmark = pytest.mark.slow

PARAMS = 'lr = 0.1\nfail_file = ""'
TRAIN = """
import os
import workbench as wb
if lr == 0.4 and os.path.exists(fail_file):
    raise ValueError("failing on purpose")
rows = len(wb.load_snapshot("wine"))
wb.log_metric("score", lr * 10)
wb.log_metric("rows", rows)
"""
RECORD = {"experiment": "sweep-api", "notebook": "/laptop/train.ipynb", "spec": {"executor": "local"},
          "param_sets": [{"lr": 0.1}, {"lr": 0.2}], "status": "running"}  # fmt: skip


@pytest.fixture(scope="module")
def team(tmp_path_factory, wine_frame):
    """A server whose workspace has snapshot wine@1 (100 rows); editors ed and eve, maintainer max, viewer vera."""
    from workbench.workspace import init_workspace, use_workspace

    home = tmp_path_factory.mktemp("team-sweeps") / ".workbench"
    use_workspace(init_workspace(home))
    try:
        wb.snapshot("wine", wine_frame.head(100))
    finally:
        use_workspace(None)
    roles = {"ed": "editor", "eve": "editor", "max": "maintainer", "vera": "viewer"}
    tokens = {name: add_user(home, name, role) for name, role in roles.items()}
    server = start_server(home)
    server.tokens = tokens
    yield server
    server.stop()


def workbench(tmp: Path, env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "workbench"), *args], cwd=tmp, env={**env, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_a_client_sweep_is_recorded_resumed_and_rerun_elsewhere(team, tmp_path):
    laptop, other = tmp_path / "laptop", tmp_path / "other"
    laptop.mkdir()
    other.mkdir()
    nb = write_notebook(laptop / "train.ipynb", PARAMS, TRAIN)
    fail_file = laptop / "FAIL"
    fail_file.touch()
    env = client_env(laptop, team.url, team.tokens["ed"])

    # A 4-point sweep whose lr=0.4 point fails: recorded on the server with its four runs.
    done = workbench(laptop, env, "sweep", str(nb), "--grid", "lr=0.1,0.2,0.3,0.4", "-p", f"fail_file={fail_file}",
                     "--parallel", "2", "--json")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    sweep_id = result["sweep_id"]
    assert [row["status"] for row in result["runs"]] == ["finished", "finished", "finished", "failed"], result
    with team.client("vera") as http:  # a viewer reads sweeps
        info = http.get(f"/api/v1/sweeps/{sweep_id}").json()
        listed = http.get("/api/v1/sweeps").json()
    assert info["creator"] == "ed" and info["status"] == "failed" and info["experiment"] == "sweep-train"
    assert info["total"] == 4 and info["counts"] == {"finished": 3, "failed": 1}
    assert info["spec"]["executor"] == "local" and info["spec"]["grid"] == {"lr": [0.1, 0.2, 0.3, 0.4]}
    assert [p["lr"] for p in info["param_sets"]] == [0.1, 0.2, 0.3, 0.4]
    assert {r["run_id"] for r in info["runs"]} == {row["run_id"] for row in result["runs"]}
    assert [s["sweep_id"] for s in listed if s["sweep_id"] == sweep_id] == [sweep_id]
    failed = next(row["run_id"] for row in result["runs"] if row["status"] == "failed")

    # --resume: the server says which points finished; only the failed one runs again.
    fail_file.unlink()
    resumed = workbench(laptop, env, "sweep", "--resume", sweep_id, "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    again = json.loads(resumed.stdout)
    kept = {row["run_id"] for row in result["runs"]} - {failed}
    new = [row for row in again["runs"] if row["run_id"] not in kept]
    assert {row["run_id"] for row in again["runs"]} >= kept and len(new) == 1, again
    assert new[0]["params.lr"] == 0.4 and new[0]["status"] == "finished"
    with team.client("ed") as http:
        info = http.get(f"/api/v1/sweeps/{sweep_id}").json()
        replacement = http.get(f"/api/v1/runs/{new[0]['run_id']}").json()
    assert info["status"] == "finished" and info["counts"] == {"finished": 4, "failed": 1}
    assert replacement["sweep_id"] == sweep_id and replacement["parent_run_id"] == failed
    assert replacement["creator"] == "ed"

    # Another machine, another user: rerun a run the laptop logged, after wine@2 was registered.
    original_id = next(row["run_id"] for row in result["runs"] if row["params.lr"] == 0.3)
    other_env = client_env(other, team.url, team.tokens["eve"])
    newer = subprocess.run([str(VENV_BIN / "python"), "-c", "import sys, workbench as wb, pandas as pd; "
                            "wb.snapshot('wine', pd.read_csv(sys.stdin))"], input=_csv(50), cwd=other,
                           env=other_env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert newer.returncode == 0, newer.stderr
    rerun = workbench(other, other_env, "rerun", original_id, "--json")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    copy = json.loads(rerun.stdout)
    with team.client("eve") as http:
        original = http.get(f"/api/v1/runs/{original_id}").json()
        logged = http.get(f"/api/v1/runs/{copy['run_id']}").json()
    assert logged["status"] == "finished" and logged["creator"] == "eve"
    assert logged["params"] == original["params"] and logged["params"]["lr"] == 0.3
    assert logged["inputs"] == original["inputs"] == ["wine@1"]  # pinned, though wine@2 is the latest
    assert logged["metrics"] == original["metrics"] == {"score": pytest.approx(3.0), "rows": 100.0}
    assert logged["parent_run_id"] == original_id and logged["tags"]["rerun_of"] == original_id
    assert logged["sweep_id"] is None and "sweep" not in logged["tags"]
    assert not (other / ".workbench").exists()

    # --background returns at once (queued); a detached worker executes it and logs it to the server.
    started = workbench(other, other_env, "rerun", original_id, "--background", "--json")
    assert started.returncode == 0, started.stdout + started.stderr
    queued = json.loads(started.stdout)
    assert queued["status"] == "queued" and queued["parent_run_id"] == original_id
    background = _wait_finished(team, queued["run_id"])
    assert background["params"] == original["params"] and background["inputs"] == ["wine@1"]
    assert background["creator"] == "eve"


def _csv(rows: int) -> str:
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame.head(rows).to_csv(index=False)


def _wait_finished(team, run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    with team.client("eve") as http:
        while time.monotonic() < deadline:
            answer = http.get(f"/api/v1/runs/{run_id}")
            if answer.status_code == 200 and answer.json()["status"] in ("finished", "failed", "killed"):
                return answer.json()
            time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish on the server within {timeout} s")


def test_sweep_records_are_idempotent_and_guarded(team):
    sweep_id = "20261201-120000-5eeda001"
    with team.client("ed") as http:
        first = http.put(f"/api/v1/sweeps/{sweep_id}", json=RECORD)
        again = http.put(f"/api/v1/sweeps/{sweep_id}", json=RECORD)  # a client's retry
        assert first.status_code == again.status_code == 200, first.text
        assert first.json() == again.json()
        other_sets = http.put(f"/api/v1/sweeps/{sweep_id}", json={**RECORD, "param_sets": [{"lr": 9}]})
        bad_status = http.put(f"/api/v1/sweeps/{sweep_id}", json={**RECORD, "status": "done"})
        bad_id = http.put("/api/v1/sweeps/not-a-sweep", json=RECORD)
        missing = http.get("/api/v1/sweeps/20261201-120000-0000beef")
        audit = http.get("/api/v1/audit", params={"target": f"sweep:{sweep_id}"}).json()
    with team.client("eve") as http:
        not_hers = http.put(f"/api/v1/sweeps/{sweep_id}", json={**RECORD, "status": "failed"})
    with team.client("vera") as http:
        viewer = http.put(f"/api/v1/sweeps/{sweep_id}", json=RECORD)
        read = http.get(f"/api/v1/sweeps/{sweep_id}").json()
    with team.client("max") as http:
        ended = http.put(f"/api/v1/sweeps/{sweep_id}", json={**RECORD, "status": "finished"})

    record = first.json()
    assert record["creator"] == "ed" and record["status"] == "running" and record["total"] == 2
    assert record["param_sets"] == RECORD["param_sets"] and record["runs"] == [] and record["counts"] == {}
    assert other_sets.status_code == 400 and "another experiment" in other_sets.json()["error"]
    assert bad_status.status_code == 400 and "status" in bad_status.json()["error"]
    assert bad_id.status_code == 400 and "not-a-sweep" in bad_id.json()["error"]
    assert missing.status_code == 404 and missing.json()["hint"]
    assert not_hers.status_code == 403 and "started by ed" in not_hers.json()["error"]
    assert viewer.status_code == 403 and "recording sweeps needs role editor" in viewer.json()["error"]
    assert read["sweep_id"] == sweep_id and read["status"] == "running"
    assert ended.status_code == 200 and ended.json()["status"] == "finished" and ended.json()["creator"] == "ed"
    entries = audit if isinstance(audit, list) else audit.get("entries", audit)
    assert [e["action"] for e in entries if e["target"] == f"sweep:{sweep_id}"] == ["sweep.started"]


def test_resume_of_an_unknown_sweep_and_a_viewers_sweep_are_refused(team, tmp_path):
    nb = write_notebook(tmp_path / "train.ipynb", PARAMS, TRAIN)
    env = client_env(tmp_path, team.url, team.tokens["ed"])
    unknown = workbench(tmp_path, env, "sweep", "--resume", "20261201-120000-0000beef")
    assert unknown.returncode != 0 and "No sweep 20261201-120000-0000beef" in unknown.stdout + unknown.stderr
    assert "Traceback" not in unknown.stderr
    viewer = workbench(tmp_path, client_env(tmp_path, team.url, team.tokens["vera"]), "sweep", str(nb),
                       "--grid", "lr=0.1,0.2")  # fmt: skip
    assert viewer.returncode != 0 and "editor" in viewer.stdout + viewer.stderr
    with team.client("vera") as http:
        assert not [s for s in http.get("/api/v1/sweeps").json() if s["creator"] == "vera"]
    assert os.environ.get("WORKBENCH_URL") is None  # the test process itself stays local

"""Cancelling a run from another machine (issue 18): `workbench cancel RUN_ID` against a team server.

The run executes on alice's client (`workbench run`, logged to the server); the server records the
request (`POST /runs/{id}/cancel`), the answer to the client's next keep-alive says so, and the
client's sender cancels the run there as a local cancel would: it ends `killed`, with its executed
notebook and what it logged before. Real processes on loopback: one server, client processes.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import VENV_BIN, write_notebook
from test_team_logging import client_env
from test_team_server import Server, empty_team

pytestmark = pytest.mark.slow

SLOW = """
import time
import workbench as wb
wb.log_metric("before", 0.25)
time.sleep(60)
wb.log_metric("after", 1.0)
"""
USERS = {"alice": "editor", "carl": "editor", "bob": "maintainer", "vera": "viewer"}


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Server:
    server = empty_team(tmp_path_factory.mktemp("team-cancel") / ".workbench", USERS)
    yield server
    server.stop()


def cancel(team: Server, tmp: Path, user: str, run_id: str) -> subprocess.CompletedProcess[str]:
    """`workbench cancel RUN_ID` as `user`, from a client machine of their own."""
    machine = tmp / f"{user}-machine"
    machine.mkdir(exist_ok=True)
    return subprocess.run([str(VENV_BIN / "workbench"), "cancel", run_id], cwd=machine, text=True,
                          env=client_env(machine, team.url, team.tokens[user]), capture_output=True,
                          timeout=60)  # fmt: skip


def server_run(team: Server, run_id: str) -> dict:
    with team.client("bob") as http:
        answer = http.get(f"/api/v1/runs/{run_id}")
        return answer.json() if answer.status_code == 200 else {}


def wait_for_running(team: Server, experiment: str, proc: subprocess.Popen, timeout: float = 60) -> str:
    """The id of the run of `experiment` once the server has it running with its first metric."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with team.client("bob") as http:
            rows = http.get("/api/v1/runs", params={"experiment": experiment}).json()
        if rows and rows[0]["status"] == "running" and rows[0].get("metrics.before") is not None:
            return rows[0]["run_id"]
        time.sleep(0.3)
    raise AssertionError(f"no running run of {experiment} on the server after {timeout} s")


def test_a_run_is_cancelled_from_another_machine(team: Server, tmp_path: Path) -> None:
    laptop = tmp_path / "alice-laptop"
    laptop.mkdir()
    nb = write_notebook(laptop / "slow.ipynb", None, SLOW)
    proc = subprocess.Popen([str(VENV_BIN / "workbench"), "run", str(nb), "-e", "cancelled", "--json"], cwd=laptop,
                            env=client_env(laptop, team.url, team.tokens["alice"]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        run_id = wait_for_running(team, "cancelled", proc)

        # Refused: a viewer (the server's 403 message), an editor who did not create it. It keeps running.
        refused = cancel(team, tmp_path, "vera", run_id)
        assert refused.returncode != 0 and "needs role editor" in refused.stderr + refused.stdout, refused
        refused = cancel(team, tmp_path, "carl", run_id)
        assert refused.returncode != 0, refused
        assert "created by alice" in refused.stderr + refused.stdout, refused
        assert not (team.home / "runs" / run_id / "cancel").exists()

        # A maintainer cancels it: alice's client ends it killed, with what it logged.
        asked = time.monotonic()
        done = cancel(team, tmp_path, "bob", run_id)
        assert done.returncode == 0 and f"Cancelling {run_id}" in done.stdout, done
        out, err = proc.communicate(timeout=40)
        took = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < 25, (took, err[-3000:])
    result = json.loads(out)
    assert result["status"] == "killed", (result, err[-3000:])
    run = server_run(team, run_id)
    assert run["status"] == "killed" and run["error"]["ename"] == "Cancelled", run
    assert run["metrics"] == {"before": pytest.approx(0.25)}
    assert run["output_blob"] and run["creator"] == "alice"
    with team.client("bob") as http:
        assert http.head(f"/api/v1/blobs/{run['output_blob']}").status_code == 200
        entries = http.get("/api/v1/audit", params={"action": "run.cancel_requested"}).json()
    assert [(e["actor"], e["target"]) for e in entries] == [("bob", f"run:{run_id}")], entries
    print(f"cancelled run ended killed {took:.1f} s after 'workbench cancel' was started")

    # Again: it has ended (cancelled false), through the CLI and the API.
    again = cancel(team, tmp_path, "alice", run_id)
    assert again.returncode == 0 and "has already ended" in again.stdout, again
    with team.client("alice") as http:
        answer = http.post(f"/api/v1/runs/{run_id}/cancel")
    assert answer.status_code == 200 and answer.json() == {"run_id": run_id, "cancelled": False}


def test_cancelling_an_unknown_run(team: Server, tmp_path: Path) -> None:
    unknown = "20990101-000000-deadbeef"
    with team.client("alice") as http:
        answer = http.post(f"/api/v1/runs/{unknown}/cancel")
        assert answer.status_code == 404 and f"No run {unknown}" in answer.json()["error"], answer.text
        assert http.post("/api/v1/runs/not-a-run/cancel").status_code == 400
    with team.client("vera") as http:
        refused = http.post(f"/api/v1/runs/{unknown}/cancel")
        assert refused.status_code == 403 and "needs role editor" in refused.json()["error"], refused.text
    done = cancel(team, tmp_path, "alice", unknown)
    assert done.returncode != 0 and f"No run {unknown}" in done.stderr + done.stdout, done

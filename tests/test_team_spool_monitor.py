"""The client spool is cleaned once the server has its runs, and `workbench monitor` on a client reads
the server's report (issue 18), as real processes on loopback.

Spool: runs logged from a client process are removed from its spool (with the blobs no other spooled
run uses) by `workbench sync --clean`, or by a later process's sender once they are older than
`WORKBENCH_SPOOL_KEEP_HOURS`; a run the server lacks (it was down) or one still being written stays,
and so does a blob a kept run refers to. Monitor: a model server on one client machine ships its
prediction log; `workbench monitor wine` and `wb.drift_report` on another client (a viewer, no
workspace) get the report the team server computes over those predictions.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import VENV_BIN
from test_team_logging import client_env, start_server
from test_team_serve import FEATURES, Team, predict, start_serve
from test_team_server import add_user, free_port, make_workspace

pytestmark = pytest.mark.slow

# A client run: a param and a text artifact (NOTE), its run id written to argv[1]; with HOLD set, it
# stays open (its process alive) until the file HOLD exists.
LOGGER = r"""
import os, pathlib, sys, time
import workbench as wb

wb.log_param("lr", 0.1)
wb.log_text(os.environ["NOTE"], "notes.txt")
pathlib.Path(sys.argv[1]).write_text(wb.tracking.active_run_id())
while os.environ.get("HOLD") and not os.path.exists(os.environ["HOLD"]):
    time.sleep(0.05)
wb.end_run()
"""

REPORT = r"""
import json
import workbench as wb

report = wb.drift_report("wine")
print(json.dumps({"type": type(report).__name__, "live_rows": report.live_rows, "drifted": report.drifted,
                  "dtypes": {c: str(t) for c, t in report.table.dtypes.items()}}))
"""


@pytest.fixture(scope="module")
def team(tmp_path_factory, wine_frame):
    from workbench.models.registry import load
    from workbench.workspace import Workspace

    home = tmp_path_factory.mktemp("team-spool") / ".workbench"
    make_workspace(home, wine_frame)  # wine: v1 production, v2 staging
    rows = wine_frame[FEATURES].iloc[::9].to_dict(orient="records")
    expected = {v: [int(p) for p in load(f"wine@{v}", Workspace(home))[0].predict(wine_frame[FEATURES].iloc[::9])]
                for v in (1, 2)}  # fmt: skip
    tokens = {name: add_user(home, name, role) for name, role in {"ed": "editor", "vera": "viewer"}.items()}
    port = free_port()
    team = Team(home, start_server(home, port), tokens, rows, expected, port)
    yield team
    team.server.stop()
    assert "Traceback" not in team.server.log.read_text(), team.server.log.read_text()


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`workbench ARGS` on a client machine."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(VENV_BIN / "workbench"), *args], capture_output=True, text=True, cwd=cwd,
                          env={**env, "COLUMNS": "250", "NO_COLOR": "1"}, timeout=120)  # fmt: skip


def log_run(tmp: Path, env: dict[str, str], note: str, hold: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A client process logging a run (waited for unless `hold`); its run id."""
    folder = tmp / f"run-{note}-{time.monotonic_ns()}"
    folder.mkdir(parents=True)
    (folder / "train.py").write_text(LOGGER)
    id_file = folder / "run_id"
    proc = subprocess.Popen([sys.executable, "train.py", str(id_file)], cwd=folder, text=True,
                            env={**env, "NOTE": note, **({"HOLD": str(hold)} if hold else {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    if hold is None:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    deadline = time.monotonic() + 60
    while not id_file.is_file() or not id_file.read_text():
        assert proc.poll() is None or proc.returncode == 0, proc.stderr.read()
        assert time.monotonic() < deadline, "the client logged no run within 60 s"
        time.sleep(0.05)
    return proc, id_file.read_text()


def spool_of(tmp: Path) -> Path:
    [spool] = (tmp / "cache" / "workbench" / "spool").iterdir()
    return spool


def blob_of(spool: Path, note: str) -> Path:
    blob_id = hashlib.sha256(note.encode()).hexdigest() + ".txt"
    return spool / "blobs" / blob_id[:2] / blob_id


def server_run(team: Team, run_id: str) -> dict:
    with team.api("vera") as http:
        answer = http.get(f"/api/v1/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_sync_clean_removes_synced_runs_but_not_an_active_one_nor_the_blob_it_uses(team, tmp_path):
    env = client_env(tmp_path, team.url, team.tokens["ed"], WORKBENCH_SPOOL_KEEP_HOURS="inf")  # no automatic cleaning
    _, done = log_run(tmp_path, env, "shared")
    release = tmp_path / "release"
    active, running = log_run(tmp_path, env, "shared", hold=release)
    spool = spool_of(tmp_path)
    try:
        proc = cli(env, tmp_path / "cwd", "sync", "--clean", "--json", "--timeout", "60")
        assert proc.returncode == 0, proc.stderr
        cleaned = json.loads(proc.stdout)["cleaned"]
        assert cleaned["removed"] == [done] and cleaned["kept"] == {"active": 1}, cleaned
        assert cleaned["blobs"] == 0 and cleaned["freed_bytes"] > 0
        assert not (spool / "runs" / done).exists() and (spool / "runs" / running).is_dir()
        assert blob_of(spool, "shared").is_file()  # the running run refers to it
    finally:
        release.touch()
        assert active.wait(timeout=120) == 0, active.stderr.read()
    proc = cli(env, tmp_path / "cwd", "sync", "--clean")
    assert proc.returncode == 0, proc.stderr
    assert f"Removed 1 synced run and 1 blob from {spool} (" in proc.stdout and "freed)." in proc.stdout, proc.stdout
    assert not list((spool / "runs").iterdir()) and not blob_of(spool, "shared").exists()
    assert not (spool / "removing").exists() or not list((spool / "removing").iterdir())
    for run_id in (done, running):  # all of it on the server
        run = server_run(team, run_id)
        assert run["status"] == "finished" and [a["name"] for a in run["artifacts"]] == ["notes.txt"], run


def test_a_run_the_server_lacks_is_kept_until_it_has_it(team, tmp_path):
    env = client_env(tmp_path, team.url, team.tokens["ed"], WORKBENCH_SPOOL_KEEP_HOURS="0",
                     WORKBENCH_SYNC_TIMEOUT="0.5")  # fmt: skip
    team.server.stop()
    try:
        _, run_id = log_run(tmp_path, env, "offline")
        spool = spool_of(tmp_path)
        proc = cli(env, tmp_path / "cwd", "sync", "--clean", "--json", "--timeout", "1")
        assert proc.returncode == 2 and "does not have everything yet" in proc.stderr, proc.stderr
        cleaned = json.loads(proc.stdout)["cleaned"]
        assert cleaned["removed"] == [] and cleaned["kept"] == {"syncing": 1}, cleaned
        assert (spool / "runs" / run_id / "events.jsonl").is_file() and blob_of(spool, "offline").is_file()
    finally:
        team.server = start_server(team.home, team.port)
    proc = cli(env, tmp_path / "cwd", "sync", "--clean", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cleaned"]["removed"] == [run_id]
    assert not (spool / "runs" / run_id).exists() and not blob_of(spool, "offline").exists()
    assert server_run(team, run_id)["status"] == "finished"


def test_the_next_process_removes_synced_runs_older_than_the_keep_period(team, tmp_path):
    env = client_env(tmp_path, team.url, team.tokens["ed"], WORKBENCH_SPOOL_KEEP_HOURS="0")
    _, first = log_run(tmp_path, env, "first")
    spool = spool_of(tmp_path)
    assert (spool / "runs" / first).is_dir(), "a process does not remove its own runs"
    _, second = log_run(tmp_path, env, "second")
    assert not (spool / "runs" / first).exists() and not blob_of(spool, "first").exists()
    assert (spool / "runs" / second).is_dir() and blob_of(spool, "second").is_file()
    assert server_run(team, first)["status"] == "finished"
    env_kept = client_env(tmp_path, team.url, team.tokens["ed"])  # default: 24 hours
    log_run(tmp_path, env_kept, "third")
    assert (spool / "runs" / second).is_dir()


def test_monitor_on_a_client_reports_the_predictions_model_servers_shipped(team, tmp_path_factory):
    laptop = tmp_path_factory.mktemp("laptop-serving")
    served = start_serve(team, laptop, "ed")
    try:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            for _ in range(3):
                predict(http, team)
    finally:
        output = served.stop()  # ships what is left
    assert "Traceback" not in output, output
    rows = 3 * len(team.rows)
    stored = team.home / "predictions" / "wine"
    assert sum(p.read_text().count("\n") for p in stored.glob("remote-*.jsonl")) == rows

    viewer = tmp_path_factory.mktemp("laptop-vera")
    env = client_env(viewer, team.url, team.tokens["vera"])
    proc = cli(env, viewer / "cwd", "monitor", "wine", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model"] == "wine" and report["live_rows"] == rows and report["reference"] == "wine@1"
    assert [c["column"] for c in report["columns"]] == [*FEATURES, "prediction"]
    proc = cli(env, viewer / "cwd", "monitor", "wine@1", "--threshold", "0.3")
    assert proc.returncode == 0, proc.stderr
    table = [line.split("\t") for line in proc.stdout.splitlines()]  # not a terminal: tab-separated
    table = table[: [row[0] for row in table].index("version")]  # the drift table, then the live quality's
    assert table[0] == ["column", "kind", "psi", "ks", "p", "status"], proc.stdout
    inputs = [(c["column"], "DRIFT" if c["psi"] > 0.3 else "ok") for c in report["columns"][:-1]]  # all v1's
    assert [(r[0], r[-1]) for r in table[1:-1]] == inputs and table[-1][0] == "prediction", proc.stdout
    script = viewer / "report.py"
    script.write_text(REPORT)
    answer = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=viewer,
                            timeout=120)  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    drifted = report["drifted"]
    assert json.loads(answer.stdout) == {"type": "DriftReport", "live_rows": rows, "drifted": drifted, "dtypes": {
        "column": "object", "kind": "object", "psi": "float64", "ks": "float64", "p_value": "float64",
        "reference_mean": "float64", "live_mean": "float64", "drift": "bool"}}  # fmt: skip
    for args, message in [(["--since", "2999-01-01"], "No logged predictions for wine yet."),
                          (["--since", "soon"], "Invalid --since 'soon'.")]:  # fmt: skip
        proc = cli(env, viewer / "cwd", "monitor", "wine", *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr

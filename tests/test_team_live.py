"""Live quality with a team server, as real processes on loopback.

A model server on a client machine (`workbench serve wine@production` with an editor's token) serves
predictions and receives outcomes on /feedback; it ships its prediction log, its failure log and
those outcomes to the team server exactly once. Another client (a viewer) then reads the live
quality the server computes (`workbench monitor wine --window 1d --json`), and an editor's
`wb.log_outcomes` records late outcomes on the server (a viewer's is refused, naming the role).
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from conftest import VENV_BIN
from test_team_logging import client_env
from test_team_serve import predict, start_serve, team  # noqa: F401  (the module's team server)

pytestmark = pytest.mark.slow


def run_client(team, tmp, user: str, *args: str) -> subprocess.CompletedProcess:  # noqa: F811
    env = client_env(tmp, team.url, team.tokens[user])
    return subprocess.run(args, env=env, cwd=tmp, capture_output=True, text=True, timeout=180)


LOG_OUTCOMES = """
import sys, pandas as pd, workbench as wb
ids, outcomes = sys.argv[1], [int(v) for v in sys.argv[2].split(",")]
frame = pd.DataFrame({"request_id": [ids] * len(outcomes), "row": range(len(outcomes)), "outcome": outcomes})
try:
    print(wb.log_outcomes("wine", frame, row_column="row"))
except wb.WorkbenchError as exc:
    print("refused:", exc)
"""


def test_live_quality_and_outcomes_through_the_team_server(team, tmp_path_factory):  # noqa: F811
    client = tmp_path_factory.mktemp("laptop-live")
    served = start_serve(team, client, "ed")
    try:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            first, second = predict(http, team), predict(http, team)
            truth = list(first["predictions"])
            truth[0] = (truth[0] + 1) % 3  # one wrong answer
            items = [{"request_id": first["request_id"], "row": i, "outcome": v} for i, v in enumerate(truth)]
            sent = http.post("/feedback", json={"outcomes": items})
            assert sent.status_code == 200, sent.text
            assert http.post("/feedback", json=items[0]).status_code == 200  # a duplicate, kept, not counted
    finally:
        output = served.stop()  # ships what is left
    assert "Warning" not in output, output
    n = len(team.rows)
    received = [line for path in (team.home / "outcomes" / "wine").glob("remote-*.jsonl")
                for line in path.read_text().splitlines()]  # fmt: skip
    assert len(received) == n + 1  # every outcome once, the duplicate line too
    assert (team.home / "predictions" / "wine" / "failures").is_dir()  # failures logged (none happened)

    editor = tmp_path_factory.mktemp("laptop-ed")
    late = ",".join(str(v) for v in second["predictions"])
    viewer = tmp_path_factory.mktemp("laptop-vera")
    refused = run_client(team, viewer, "vera", sys.executable, "-c", LOG_OUTCOMES, second["request_id"], late)
    assert "refused:" in refused.stdout and "editor" in refused.stdout, refused.stdout + refused.stderr
    logged = run_client(team, editor, "ed", sys.executable, "-c", LOG_OUTCOMES, second["request_id"], late)
    assert logged.returncode == 0 and f"'recorded': {n}" in logged.stdout, logged.stdout + logged.stderr
    assert "'unknown': 0" in logged.stdout and "'duplicates': 0" in logged.stdout, logged.stdout

    cli = str(VENV_BIN / "workbench")
    shown = run_client(team, viewer, "vera", cli, "monitor", "wine", "--window", "1d", "--since", "1d", "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    live = json.loads(shown.stdout)["live"]
    assert live["task"] == "classification" and live["errors_logged"] is True
    served_rows = [r for r in live["rows"] if not r["shadow"]]
    assert sum(r["rows"] for r in served_rows) >= 2 * n and sum(r["outcomes"] for r in served_rows) == 2 * n
    mine = [r for r in served_rows if r["version"] == first["version"]]
    assert sum(r["errors"] for r in mine) == 0
    assert live["counts"]["duplicates"] == 1 and live["counts"]["unknown"] == 0
    assert live["counts"]["outcomes"] == 2 * n
    accuracy = (2 * n - 1) / (2 * n)
    assert any(abs(r["accuracy"] - accuracy) < 1e-9 for r in mine), mine

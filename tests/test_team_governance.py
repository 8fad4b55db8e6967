"""Governance and automation against a team server, from client processes that know only WORKBENCH_URL and
WORKBENCH_TOKEN (own XDG folders): `wb.explain` and `wb.fairness` judge the server's model on the server's
data and give exactly what they give on the workspace folder; their results are stored with the server's run
(editor role, the run's creator or a maintainer); `wb.Guard` rolls the server's alias back; pipeline runs
and `watch` are refused with a clear message (never run against a folder on the client), while
`list_pipelines` reads the server's audit log.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import write_notebook
from test_team_server import add_user, make_workspace, start_server
from test_team_store_models import as_client, cli

pytestmark = pytest.mark.slow

USERS = {"vera": "viewer", "ed": "editor", "max": "maintainer"}
EXPLAIN = {"n_repeats": 2, "top": 2}
PIPELINES = "pipelines:\n  retrain:\n    on: {snapshot: wine}\n    steps: [{notebook: train.ipynb}]\n"


@pytest.fixture(scope="module")
def team(tmp_path_factory, wine_frame):
    """Model wine (v1 production, v2 staging; alias candidate moved 1 -> 2), a snapshot `wine_groups` with a
    sensitive column, a recorded run of pipeline `retrain` that used wine@1; what explain and fairness
    answer on the folder; a server with a viewer, an editor and a maintainer."""
    from workbench import audit
    from workbench.catalog import transaction
    from workbench.governance.explain import explain
    from workbench.governance.fairness import fairness
    from workbench.models.registry import set_alias
    from workbench.snapshots.store import register
    from workbench.workspace import Workspace

    home = tmp_path_factory.mktemp("team-governance") / ".workbench"
    runs = make_workspace(home, wine_frame)
    ws = Workspace(home)
    high = wine_frame["alcohol"] > wine_frame["alcohol"].median()
    register("wine_groups", wine_frame.assign(group=high.map({True: "high", False: "low"})), ws=ws)
    set_alias("wine", "candidate", 1, ws=ws)
    set_alias("wine", "candidate", 2, ws=ws)
    with transaction(ws) as con:
        audit.record(con, "pipeline.finished", "pipeline:retrain", {"pipeline_run": "p1", "inputs": {"wine": "wine@1"}})
    local_explain = explain("wine@production", log=False, ws=ws, **EXPLAIN)
    local_fairness = fairness("wine@production", "group", snapshot="wine_groups", log=False, ws=ws)
    tokens = {name: add_user(home, name, role) for name, role in USERS.items()}
    server = start_server(home)
    server.tokens, server.runs, server.ws = tokens, runs, ws
    server.local = {"explain": local_explain, "fairness": local_fairness}
    yield server
    server.stop()


def test_explain_and_fairness_from_a_viewer_match_the_folder(team, tmp_path):
    code = """
e = wb.explain("wine@production", log=False, **ARGS["explain"])
out["explain"] = (e.subject, e.run_id, e.snapshot, e.importance, e.partial_dependence, sorted(e.figures))
f = wb.fairness("wine@production", "group", snapshot="wine_groups", log=False)
out["fairness"] = (f.snapshot, f.positive, f.groups, f.demographic_parity_difference, f.equalized_odds_difference)
out["refused"] = refused(wb.explain, "wine@production", **ARGS["explain"])
out["workspace_made"] = os.path.exists(".workbench")
"""
    out = as_client(team, tmp_path / "vera", "vera", code, explain=EXPLAIN)
    local_e, local_f = team.local["explain"], team.local["fairness"]
    subject, run_id, snapshot, importance, curves, figures = out["explain"]
    assert (subject, run_id, snapshot) == (local_e.subject, team.runs["weak"], local_e.snapshot)
    pd.testing.assert_frame_equal(importance, local_e.importance)
    assert curves.keys() == local_e.partial_dependence.keys()
    for feature, curve in curves.items():
        pd.testing.assert_frame_equal(curve, local_e.partial_dependence[feature])
    assert figures == sorted(local_e.figures)
    snap, positive, groups, parity, odds = out["fairness"]
    assert (snap, positive) == ("wine_groups@1", local_f.positive)
    pd.testing.assert_frame_equal(groups, local_f.groups)
    assert (parity, odds) == (local_f.demographic_parity_difference, local_f.equalized_odds_difference)
    # logging needs the editor role: refused before the analysis, with the way to only see the results
    kind, message, _ = out["refused"]
    assert kind == "PermissionDeniedError" and "logging runs needs role editor; you are viewer" in message
    assert out["workspace_made"] is False
    # the CLI answers from the server too
    done = cli(team, tmp_path / "vera-cli", "vera", "explain", "wine@production", "--no-log", "--json",
               "--repeats", "2", "--top", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert [row["feature"] for row in answer["importance"]] == list(local_e.importance["feature"])
    assert answer["importance"][0]["importance_mean"] == pytest.approx(local_e.importance["importance_mean"][0])
    refused_cli = cli(team, tmp_path / "vera-cli", "vera", "fairness", "wine@production", "--sensitive", "group",
                      "--snapshot", "wine_groups")  # fmt: skip
    assert refused_cli.returncode != 0 and "--no-log" in refused_cli.stderr, refused_cli.stderr


def test_results_are_stored_with_the_servers_run_by_its_rules(team, tmp_path):
    code = """
e = wb.explain("wine@production", **ARGS["explain"])
out["metrics"] = {k: v for k, v in wb.get_run(e.run_id).metrics.items() if k.startswith("explain.")}
out["artifacts"] = sorted(a.name for a in wb.get_run(e.run_id).artifacts if a.name.startswith(("explain/", "card/")))
out["card"] = wb.model_card("wine@production")
out["importance"] = e.importance
"""
    ed = as_client(team, tmp_path / "ed", "ed", "out['ed'] = refused(wb.fairness, 'wine@production', 'group', "
                   "snapshot='wine_groups')")  # fmt: skip
    kind, message, _ = ed["ed"]
    assert kind == "PermissionDeniedError" and "created by" in message, message
    out = as_client(team, tmp_path / "max", "max", code, explain=EXPLAIN)
    expected = {f"explain.importance.{row.feature}": row.importance_mean for row in out["importance"].itertuples()}
    assert out["metrics"] == pytest.approx(expected)
    assert "card/explainability.md" in out["artifacts"] and "explain/importance" in out["artifacts"]
    assert "Explainability" in out["card"] and "Permutation importance on `wine@1`" in out["card"]
    with team.client("vera") as http:  # indexed on the server, its blobs stored there
        run = http.get(f"/api/v1/runs/{team.runs['weak']}").json()
    assert run["metrics"]["explain.importance.proline"] == pytest.approx(expected["explain.importance.proline"])
    assert not list((tmp_path / "max").glob("**/blobs"))  # nothing written on the client


def test_a_guard_rolls_the_servers_alias_back(team, tmp_path):
    code = """
from workbench.governance.autorollback import RequestWindow
policy = wb.GuardPolicy(max_error_rate=0.1, min_requests=5)
if ARGS["maintainer"]:
    window = RequestWindow(10)
    for _ in range(6):
        window.record(2, 500, 0.01)
    guard = wb.Guard("wine@candidate", policy, window)
    out["decisions"] = [d.to_dict() for d in guard.run(once=True)]
    out["now"] = wb.get_model_version("wine@candidate").version
    out["moved"] = wb.audit_log(action="alias.moved")[-1]
else:
    out["refused"] = refused(wb.Guard, "wine@candidate", policy)
"""
    ed = as_client(team, tmp_path / "ed", "ed", code, maintainer=False)
    assert "rolling back needs role maintainer; ed is editor" in ed["refused"][1]
    out = as_client(team, tmp_path / "max", "max", code, maintainer=True)
    [decision] = out["decisions"]
    assert (decision["from_version"], decision["to_version"]) == (2, 1)
    assert out["now"] == 1
    moved = out["moved"]
    assert moved.actor == "max" and "auto-rollback of wine@candidate from version 2" in (moved.reason or "")


def test_pipeline_runs_and_watch_are_refused_while_the_list_reads_the_server(team, tmp_path):
    from workbench.workspace import init_workspace

    client = tmp_path / "ed"
    client.mkdir()
    write_notebook(client / "train.ipynb", 'snapshot = "wine"', "pass")
    (client / "workbench.yaml").write_text(PIPELINES)
    init_workspace(client / ".workbench")  # a folder of its own must not be used silently instead
    code = """
from workbench.governance.pipelines import changed, list_pipelines, load_pipeline
out["run"] = refused(wb.run_pipeline, "retrain")
out["watch"] = refused(wb.watch, once=True)
out["list"] = list_pipelines()
out["changed"] = changed(load_pipeline("retrain"))
"""
    out = as_client(team, client, "ed", code)
    for what in ("run", "watch"):
        kind, message, _ = out[what]
        assert kind == "WorkbenchError" and f"cannot run against the team server {team.url}" in message
    [listed] = out["list"]
    assert (listed["last_status"], listed["last_inputs"]) == ("finished", {"wine": "wine@1"})
    assert out["changed"] == (False, "wine is still at wine@1, already used")
    done = cli(team, client, "ed", "pipeline", "run", "retrain")
    assert done.returncode == 2 and "only the server writes it" in done.stderr, done.stderr
    done = cli(team, client, "ed", "watch", "--once")
    assert done.returncode == 2 and "cannot run against the team server" in done.stderr, done.stderr
    assert not any((client / ".workbench" / "runs").glob("*"))  # nothing ran in the client's own folder

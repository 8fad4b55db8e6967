"""The model registry and the audit log against a team server, from client processes that know only
WORKBENCH_URL and WORKBENCH_TOKEN (own XDG folders, no workspace): `wb.list_models`, `wb.get_model`,
`wb.get_model_version`, `wb.load_model`, `wb.model_card`, `wb.promote`, `wb.set_alias`, `wb.rollback`,
`wb.set_gates` and `wb.audit_log` answer exactly what they answer on the workspace folder, roles are
the server's (a protected alias needs maintainer), gates are judged on the server and their refusal
reaches the client as `GateRefused` with every verdict, and the CLI works the same against it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import VENV_BIN
from test_team_logging import client_env
from test_team_server import add_user, make_workspace, start_server

from workbench import blobs

pytestmark = pytest.mark.slow

USERS = {"vera": "viewer", "ed": "editor", "max": "maintainer"}
FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]

# A client process: runs CODE (with `wb` imported and ARGS from the environment), then pickles `out` to OUT.
PRELUDE = """
import json, os, pickle, sys
import workbench as wb
from workbench.errors import WorkbenchError
ARGS = json.loads(os.environ["ARGS"])
out = {}

def refused(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except WorkbenchError as exc:
        return type(exc).__name__, exc.message, getattr(exc, "results", None)
    raise AssertionError("not refused")
"""


def as_client(team, tmp: Path, user: str, code: str, **args) -> dict:
    """Run `code` in a new client process of `user`; what it put into `out`."""
    tmp.mkdir(parents=True, exist_ok=True)
    result = tmp / "out.pickle"
    script = PRELUDE + code + f"\npickle.dump(out, open({str(result)!r}, 'wb'))\n"
    env = client_env(tmp, team.url, team.tokens[user], ARGS=json.dumps(args))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with open(result, "rb") as handle:  # written by this test's own child process
        return pickle.load(handle)


def cli(team, tmp: Path, user: str, *args: str) -> subprocess.CompletedProcess:
    """`workbench ARGS` on a client machine of `user` (no workspace, no --home)."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = client_env(tmp, team.url, team.tokens[user], COLUMNS="200", NO_COLOR="1")
    return subprocess.run([str(VENV_BIN / "workbench"), *args], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def team(tmp_path_factory, wine_frame):
    """Model wine (v1 production, v2 staging) and a third finished run `mid`; what the workspace folder
    answers, recorded before the server holds it; a server with a viewer, an editor and a maintainer."""
    from model_fixtures import train_run

    import workbench as wb
    from workbench.models.card import model_card
    from workbench.models.registry import get_model, get_version, list_models, load
    from workbench.workspace import Workspace, use_workspace

    home = tmp_path_factory.mktemp("team-models") / ".workbench"
    runs = make_workspace(home, wine_frame)
    ws = Workspace(home)
    use_workspace(ws)
    try:
        runs["mid"] = train_run(C=1.0)
    finally:
        use_workspace(None)
    accuracy = {name: wb.get_run(run_id, ws=ws).metrics["accuracy"] for name, run_id in runs.items()}
    assert accuracy["weak"] < accuracy["mid"], accuracy
    model, _ = load("wine@production", ws)
    local = {
        "list": list_models(ws), "model": get_model("wine", ws),
        "versions": {ref: get_version(ref, ws) for ref in ("wine@1", "wine@staging", "wine")},
        "markdown": model_card("wine@production", "markdown", ws), "html": model_card("wine@2", "html", ws),
        "predictions": [int(p) for p in model.predict(wine_frame[FEATURES].iloc[::7])],
    }  # fmt: skip
    tokens = {name: add_user(home, name, role) for name, role in USERS.items()}
    server = start_server(home)
    server.tokens, server.runs, server.local, server.accuracy = tokens, runs, local, accuracy
    server.rows = wine_frame[FEATURES].iloc[::7]
    yield server
    server.stop()


def test_a_viewer_reads_the_registry_exactly_as_from_the_folder(team, tmp_path):
    code = """
from workbench.models.registry import ModelVersion
out["list"] = wb.list_models()
out["model"] = wb.get_model("wine")
out["versions"] = {ref: wb.get_model_version(ref) for ref in ("wine@1", "wine@staging", "wine")}
model, version = wb.load_model("wine@production")
out["loaded"] = (type(model).__name__, version)
import pandas as pd
out["predictions"] = [int(p) for p in model.predict(pd.DataFrame(ARGS["rows"]))]
out["markdown"] = wb.model_card("wine@production")
out["html"] = wb.model_card("wine@2", fmt="html")
out["refusals"] = [refused(wb.promote, ARGS["mid"], "wine", alias="candidate"),
                   refused(wb.get_model_version, "wine@9"), refused(wb.get_model, "nope"),
                   refused(wb.get_model_version, "wine@bad alias")]
"""
    out = as_client(team, tmp_path / "vera", "vera", code, mid=team.runs["mid"],
                    rows=team.rows.to_dict(orient="list"))  # fmt: skip
    local = team.local
    assert out["list"] == local["list"] and out["model"] == local["model"]
    assert out["versions"] == local["versions"]  # ModelVersion dataclasses, equal field by field
    assert type(out["versions"]["wine"]).__name__ == "ModelVersion" and out["versions"]["wine"].version == 2
    assert out["loaded"] == ("Pipeline", local["versions"]["wine@1"])
    assert out["predictions"] == local["predictions"]
    assert out["markdown"] == local["markdown"] and out["html"] == local["html"]
    cached = list((tmp_path / "vera" / "cache" / "workbench" / "models").iterdir())  # the client's cache, by hash
    assert [p.name for p in cached] == [blobs.expected_sha256(local["versions"]["wine@1"].blob)]
    assert hashlib.sha256(cached[0].read_bytes()).hexdigest() == cached[0].name
    promote, missing_version, missing_model, bad_alias = out["refusals"]
    assert promote[0] == "PermissionDeniedError" and "needs role editor; you are viewer" in promote[1]
    assert missing_version[0] == "RemoteNotFoundError" and "has no version 9" in missing_version[1]
    assert missing_model[0] == "RemoteNotFoundError" and "No model named 'nope'" in missing_model[1]
    assert bad_alias[0] == "InvalidNameError"  # checked before any request, with the library's message


def test_promotion_roles_gates_rollback_and_the_audit_log_from_client_processes(team, tmp_path):
    runs = team.runs
    edited = as_client(team, tmp_path / "ed", "ed", """
version = wb.promote(ARGS["mid"], "wine", alias="candidate", reason="try it")
out["candidate"] = (type(version).__name__, version.ref, version.aliases, version.creator)
out["production"] = refused(wb.promote, ARGS["mid"], "wine", alias="production")
out["gates"] = refused(wb.set_gates, "wine", {"metrics": {"accuracy": {"min": 0.5}}})
out["staging"] = wb.set_alias("wine", "staging", 1, reason="compare").ref
""", mid=runs["mid"])  # fmt: skip
    assert edited["candidate"] == ("ModelVersion", "wine@3", ["candidate"], "ed")
    kind, message, _ = edited["production"]
    assert kind == "PermissionDeniedError"
    assert "moving alias 'production' needs role maintainer; you are editor" in message
    assert "needs role maintainer" in edited["gates"][1]
    assert edited["staging"] == "wine@1"

    threshold = (team.accuracy["weak"] + team.accuracy["mid"]) / 2
    maintained = as_client(team, tmp_path / "max", "max", """
out["gates"] = wb.set_gates("wine", {"metrics": {"accuracy": {"min": ARGS["threshold"]}}})
from workbench.models.gates import GateRefused
try:
    wb.promote(ARGS["weak"], "wine", alias="production", reason="cheaper")
except GateRefused as exc:
    out["refused"] = (exc.message, [(r.gate, r.passed, r.detail) for r in exc.results])
out["promoted"] = wb.promote(ARGS["mid"], "wine", alias="production", reason="better").ref
out["back"] = wb.rollback("wine", "production", reason="oops").ref
out["forced"] = wb.promote(ARGS["weak"], "wine", alias="candidate", force=True).ref
""", weak=runs["weak"], mid=runs["mid"], threshold=threshold)  # fmt: skip
    assert maintained["gates"] == {"metrics": {"accuracy": {"min": threshold}}}
    message, results = maintained["refused"]
    assert f"Promotion of run {runs['weak']} to wine@production refused by its gates: accuracy" in message
    assert [(gate.split()[0], passed) for gate, passed, _ in results] == [("accuracy", False)]  # with its verdict
    assert maintained["promoted"] == "wine@3" and maintained["back"] == "wine@1" and maintained["forced"] == "wine@1"

    audit = as_client(team, tmp_path / "vera-audit", "vera", """
entries = wb.audit_log(target="model:wine")
out["types"] = {type(e).__name__ for e in entries}
out["entries"] = [(e.actor, e.action, e.target, e.reason) for e in entries]
out["first"] = [e.id for e in wb.audit_log(limit=2)]
out["ids"] = [e.id for e in wb.audit_log()]
out["moves"] = [(e.actor, e.target) for e in wb.audit_log(action="alias.moved", target="model:wine@production")]
""")  # fmt: skip
    assert audit["types"] == {"AuditEntry"}
    entries = audit["entries"]
    assert ("ed", "alias.moved", "model:wine@candidate", "try it") in entries
    assert ("ed", "alias.moved", "model:wine@staging", "compare") in entries
    assert ("max", "model.gates.set", "model:wine", None) in entries
    assert ("max", "gate.refused", "model:wine", "cheaper") in entries
    assert ("max", "alias.moved", "model:wine@production", "oops") in entries
    assert audit["first"] == audit["ids"][:2] and audit["ids"] == sorted(audit["ids"])  # oldest first, as locally
    assert audit["moves"][-2:] == [("max", "model:wine@production"), ("max", "model:wine@production")]


def test_the_cli_against_the_server(team, tmp_path):
    shown = cli(team, tmp_path / "vera", "vera", "models", "show", "wine", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["name"] == "wine"
    listed = cli(team, tmp_path / "vera", "vera", "models", "list")
    assert listed.returncode == 0 and "wine" in listed.stdout, listed.stderr

    cleared = cli(team, tmp_path / "max", "max", "models", "gate", "wine", "--clear")
    assert cleared.returncode == 0 and "Gates of wine: none" in cleared.stdout, cleared.stderr
    refused = cli(team, tmp_path / "ed", "ed", "promote", team.runs["strong"], "--model", "wine")
    assert refused.returncode == 2
    assert "moving alias 'production' needs role maintainer; you are editor." in refused.stderr
    assert "Traceback" not in refused.stderr

    staged = cli(team, tmp_path / "ed", "ed", "promote", team.runs["strong"], "--model", "wine", "--alias", "qa",
                 "--reason", "cli")  # fmt: skip
    assert staged.returncode == 0 and "-> wine@2 (qa)" in staged.stdout, staged.stderr

    gated = cli(team, tmp_path / "max", "max", "models", "gate", "wine", "--min", "accuracy=0.999")
    assert gated.returncode == 0, gated.stderr
    refused = cli(team, tmp_path / "max", "max", "promote", team.runs["strong"], "--model", "wine")
    assert refused.returncode == 2 and "refused by its gates: accuracy" in refused.stderr, refused.stderr
    back = cli(team, tmp_path / "max", "max", "rollback", "wine", "--alias", "qa", "--to", "1", "--reason", "cli")
    assert back.returncode == 0 and "wine@qa -> wine@1" in back.stdout, back.stderr

    card = cli(team, tmp_path / "vera", "vera", "models", "card", "wine@2")
    assert card.returncode == 0 and card.stdout.startswith("# Model card: wine@2"), card.stderr
    audit = cli(team, tmp_path / "vera", "vera", "audit", "--model", "wine", "--limit", "3", "--json")
    assert audit.returncode == 0, audit.stderr
    last = json.loads(audit.stdout)
    assert [(e["actor"], e["action"], e["target"]) for e in last][-1] == ("max", "alias.moved", "model:wine@qa")
    assert len(last) == 3
    bad = cli(team, tmp_path / "vera", "vera", "audit", "--limit", "0")
    assert bad.returncode == 2 and "--limit must be at least 1, got 0." in bad.stderr

"""Decisions on live outcomes (issue 19): the live promotion gate, automated rollback of a worse
canary or version, and the "live metric below threshold" retraining trigger, each audited with the
numbers it used.

Most tests write prediction and outcome lines in the logs' own formats into a real workspace with
real registered models (fast, and every count is known); the guard test runs a real model server
on loopback with a deliberately worse canary, a labelled hold-out set sent through /predict and
its outcomes through POST /feedback."""

from __future__ import annotations

import json
import os
import textwrap
import time
import uuid
from datetime import datetime, timezone

import httpx
import numpy as np
import pytest
from model_fixtures import train_run

import workbench as wb
from workbench.governance.autorollback import Guard, GuardPolicy, RequestWindow, instrument
from workbench.models.gates import GateRefused, evaluate_live, validate_gates
from workbench.quality.abtest import compare_versions
from workbench.quality.outcomes import joined, record_outcomes
from workbench.serving.predlog import predictions_dir

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]
LIVE_GATE = {"live": {"metric": "accuracy", "alpha": 0.05, "min_outcomes": 30}}


def log_served(ws, model: str, version: int, correct: int, wrong: int) -> list[str]:
    """Prediction lines of `version` (class 1 predicted) in the log's format, and their outcomes:
    `correct` rows whose outcome is 1, `wrong` rows whose outcome is 0; one row per request."""
    ids = [uuid.uuid4().hex for _ in range(correct + wrong)]
    now = datetime.now(timezone.utc).isoformat()
    lines = [{"at": now, "request_id": rid, "row": 0, "version": version, "latency_ms": 1.0, "input": {"x": 1},
              "prediction": 1} for rid in ids]  # fmt: skip
    folder = predictions_dir(ws, model)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"20260101-{os.getpid()}-{uuid.uuid4().hex[:6]}.jsonl", "w") as fh:
        fh.writelines(json.dumps(line) + "\n" for line in lines)
    outcomes = [{"request_id": rid, "outcome": 1 if i < correct else 0} for i, rid in enumerate(ids)]
    record_outcomes(ws, model, outcomes, "bulk")
    return ids


@pytest.fixture()
def wine_versions(ws, wine_frame):
    """wine@1 holds production, wine@2 is registered (as staging) but not serving."""
    wb.snapshot("wine", wine_frame)
    wb.promote(train_run(C=1.0))
    wb.promote(train_run(C=0.5), alias="staging")
    return ws


# ------------------------------------------------------------------------------------------ gate


def test_live_gate_config_is_checked_and_judged_purely(wine_versions):
    clean = validate_gates({"live": {"metric": "accuracy"}})
    assert clean == {"live": {"metric": "accuracy", "alpha": 0.05, "min_outcomes": 30, "min_effect": None,
                              "since": "7d", "alias": "production"}}  # fmt: skip
    for bad, match in [({"metric": "auc"}, "not a live metric"), ({"metric": "f1", "alpha": 2}, "alpha"),
                       ({"metric": "f1", "min_outcomes": 0}, "min_outcomes"), ({"metric": "f1", "since": "soon"},
                       "since"), ({"metric": "f1", "min_effect": -1}, "min_effect"),
                       ({"metric": "f1", "margin": 1}, "unknown key")]:  # fmt: skip
        with pytest.raises(wb.ValidationError, match=match):
            validate_gates({"live": bad})
    import pandas as pd

    frame = pd.DataFrame({"version": [1] * 200 + [2] * 200, "prediction": [1] * 400,
                          "outcome": [1] * 120 + [0] * 80 + [1] * 180 + [0] * 20})  # fmt: skip
    result = compare_versions(frame, 1, 2, "accuracy", min_effect=0.05)
    assert result.verdict == "better"
    passed = evaluate_live(clean["live"], result)
    assert passed.passed and passed.gate == "live: v2 beats v1 on accuracy (p < 0.05, >= 30 outcomes)"
    assert passed.numbers["verdict"] == "better" and passed.numbers["n_b"] == 200
    strict = evaluate_live({**clean["live"], "min_effect": 0.01}, compare_versions(frame, 1, 2, "accuracy",
                                                                                  min_effect=0.01))  # fmt: skip
    assert not strict.passed and "fixed horizon is not reached" in strict.detail  # better, but decided too early


def test_live_gate_refuses_unknown_candidates_and_passes_a_better_one_after_enough_outcomes(wine_versions):
    ws = wine_versions
    wb.set_gates("wine", LIVE_GATE)
    with pytest.raises(GateRefused, match="too few outcomes") as refused:  # v2 never served: not yet known
        wb.set_alias("wine", "production", 2)
    (result,) = refused.value.results
    assert not result.passed and result.numbers["n_b"] == 0 and result.numbers["verdict"] == "not yet known"
    with pytest.raises(GateRefused, match="not a version of wine yet"):  # a new run has no live outcomes at all
        wb.promote(train_run(C=0.1))

    log_served(ws, "wine", 1, 42, 18)  # production: 70 % on 60 outcomes
    log_served(ws, "wine", 2, 20, 0)  # the canary: 100 %, but on 20 outcomes only
    with pytest.raises(GateRefused, match="too few outcomes"):
        wb.set_alias("wine", "production", 2)
    log_served(ws, "wine", 2, 39, 1)  # now 59 of 60
    moved = wb.set_alias("wine", "production", 2, reason="canary won")
    assert moved.version == 2
    (entry,) = [e for e in wb.audit_log(action="alias.moved", target="model:wine@production")
                if e.details.get("version") == 2]  # fmt: skip
    (gate,) = entry.details["gates"]
    assert gate["passed"] and gate["numbers"]["verdict"] == "better"
    assert (gate["numbers"]["n_a"], gate["numbers"]["n_b"]) == (60, 60) and gate["numbers"]["p_value"] < 0.05
    assert entry.details["bypassed"] == [] and entry.details["manual"] is True
    refusals = wb.audit_log(action="gate.refused")
    assert len(refusals) == 3 and refusals[-1].details["results"][0]["numbers"]["n_b"] == 20

    # back to v1 (the guard's way, never gated), then moving to v2 is judged again: still better
    wb.rollback("wine")
    assert wb.set_alias("wine", "production", 2).version == 2
    # the gate guards its own alias only; a worse version is refused, and --force overrides, audited
    wb.set_alias("wine", "staging", 1)
    with pytest.raises(GateRefused, match="version 1 is worse than version 2"):
        wb.set_alias("wine", "production", 1)
    forced = wb.set_alias("wine", "production", 1, force=True, reason="incident drill")
    assert forced.version == 1
    last = wb.audit_log(action="alias.moved")[-1]
    assert last.details["forced"] is True and last.details["bypassed"][0]["numbers"]["verdict"] != "better"


def test_promoting_a_registered_version_goes_through_the_live_gate(wine_versions):
    ws = wine_versions
    wb.set_gates("wine", LIVE_GATE)
    v2 = wb.get_model_version("wine@2")
    log_served(ws, "wine", 1, 30, 30)
    log_served(ws, "wine", 2, 58, 2)
    promoted = wb.promote(v2.run_id)  # the run is version 2 already: only the alias moves, gate passed
    assert promoted.version == 2 and wb.get_model_version("wine@production").version == 2


# ------------------------------------------------------------------------------------- trigger


def _pipelines(tmp_path, notebook, live: str) -> None:
    notebook("noop", None, "x = 1")
    (tmp_path / "workbench.yaml").write_text(textwrap.dedent(f"""
        pipelines:
          retrain:
            on: {{live: {live}}}
            steps: [{{notebook: noop.ipynb}}]
    """).lstrip())  # fmt: skip


def test_live_trigger_config_is_checked(tmp_path, notebook):
    from workbench.governance.pipelines import validate_file

    _pipelines(tmp_path, notebook, "{model: wine, metric: accuracy, above: 0.8}")
    with pytest.raises(wb.ValidationError, match="accuracy needs 'below: THRESHOLD'"):
        validate_file(tmp_path / "workbench.yaml")
    _pipelines(tmp_path, notebook, "{model: wine, metric: rmse, above: x, since: soon, min_outcomes: 0}")
    with pytest.raises(wb.ValidationError) as problems:
        validate_file(tmp_path / "workbench.yaml")
    text = str(problems.value.message)
    assert "on.live.above: must be a number" in text and "on.live.min_outcomes" in text and "on.live.since" in text
    _pipelines(tmp_path, notebook, "{model: wine, metric: accuracy, below: 0.8}")
    live = validate_file(tmp_path / "workbench.yaml")["retrain"].live
    assert live["side"] == "below" and live["min_outcomes"] == 100 and live["since"] == "1d"


def test_live_trigger_fires_below_threshold_only_with_enough_outcomes(wine_versions, tmp_path, notebook):
    from workbench.governance.pipelines import load_pipeline, trigger_state
    from workbench.governance.triggers import check_once

    ws = wine_versions
    _pipelines(tmp_path, notebook, "{model: wine, metric: accuracy, below: 0.8, min_outcomes: 100}")
    pipeline = load_pipeline("retrain")
    log_served(ws, "wine", 1, 30, 30)  # 50 %, but on 60 outcomes
    go, why, _ = trigger_state(pipeline, ws)
    assert not go and "has 60 outcomes" in why and "fewer than the 100" in why
    log_served(ws, "wine", 2, 10, 90)  # another version's outcomes do not count for production's
    assert not trigger_state(pipeline, ws)[0]
    log_served(ws, "wine", 1, 61, 9)  # 91 of 130 = 70 %: upper 95 % Wilson bound 0.77 < 0.8
    go, why, numbers = trigger_state(pipeline, ws)
    assert go and "confidently below 0.8" in why, why
    assert numbers["n"] == 130 and numbers["value"] == pytest.approx(91 / 130)
    assert numbers["bound"] == pytest.approx(wb_wilson_upper(91, 130)) and numbers["version"] == 1

    (fired,) = check_once(ws=ws)
    assert fired.status == "finished" and fired.trigger["n"] == 130
    entry = wb.audit_log(action="pipeline.finished")[-1]
    assert entry.details["trigger"]["bound"] == pytest.approx(numbers["bound"])
    assert entry.details["trigger"]["value"] == pytest.approx(91 / 130)
    assert check_once(ws=ws) == []  # once per served version
    assert "already triggered by this version" in trigger_state(pipeline, ws)[1]


def test_live_trigger_is_not_fooled_by_a_point_estimate_just_under(wine_versions, tmp_path, notebook):
    from workbench.governance.pipelines import load_pipeline, trigger_state

    ws = wine_versions
    _pipelines(tmp_path, notebook, "{model: wine, metric: accuracy, below: 0.8, min_outcomes: 100}")
    log_served(ws, "wine", 1, 114, 36)  # 76 % of 150: below 0.8, but the bound (0.82) is not
    go, why, _ = trigger_state(load_pipeline("retrain"), ws)
    assert not go and "not confidently below 0.8" in why
    _pipelines(tmp_path, notebook, "{model: wine, metric: f1, below: 0.9, min_outcomes: 100}")
    go, why, numbers = trigger_state(load_pipeline("retrain"), ws)  # macro F1 0.43, with a bootstrap bound
    assert go and numbers["value"] < numbers["bound"] < 0.9, why
    just_above = round(numbers["value"] + 0.005, 4)
    _pipelines(tmp_path, notebook, f"{{model: wine, metric: f1, below: {just_above}, min_outcomes: 100}}")
    go, why, _ = trigger_state(load_pipeline("retrain"), ws)
    assert not go and f"not confidently below {just_above:g}" in why


def wb_wilson_upper(successes: int, n: int) -> float:
    from workbench.quality.stats import wilson_interval

    return wilson_interval(successes, n, 0.05)[1]


# --------------------------------------------------------------------------------------- guard


def worse_run() -> str:
    """A real model deliberately worse than `train_run`'s: fitted on shuffled labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = wb.load_snapshot("wine")
    shuffled = np.random.default_rng(0).permutation(data["target"].to_numpy())
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(data[FEATURES], shuffled)
    wb.log_model(model, "wine", sample=data[FEATURES].head())
    run_id = wb.active_run_id()
    wb.end_run()
    return run_id


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _send_holdout(http: httpx.Client, frame, times: int = 1) -> None:
    """Each labelled row as its own request, then every outcome in one /feedback batch."""
    outcomes = []
    for _ in range(times):
        for record, target in zip(frame[FEATURES].to_dict(orient="records"), frame["target"], strict=True):
            answer = http.post("/predict", json={"records": [record]})
            assert answer.status_code == 200, answer.text
            outcomes.append({"request_id": answer.json()["request_id"], "outcome": int(target)})
    recorded = http.post("/feedback", json={"outcomes": outcomes})
    assert recorded.status_code == 200 and recorded.json()["recorded"] == len(outcomes), recorded.text


def _until(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_guard_stops_a_worse_canary_and_rolls_back_a_worse_version_on_a_real_server(ws, wine_frame):
    from workbench.serving.app import Canary, create_app
    from workbench.serving.server import build_server, serving_in_thread

    wb.snapshot("wine", wine_frame)
    wb.promote(train_run())  # v1: production, about 95 % on the hold-out
    wb.promote(worse_run(), alias="staging")  # v2: about a third right
    server = build_server("wine@production", port=_free_port(), ws=ws)
    canary = Canary(server.source.load("wine@2"), 0.5)
    server.app = create_app(server.slot, canary=canary, logger=server.logger)  # the canary the guard may stop
    instrument(server, window := RequestWindow(size=50))
    policy = GuardPolicy(max_error_rate=None, ab_metric="accuracy", ab_min_outcomes=30)
    guard = Guard("wine@production", policy, window, ws, ab_every=0.2, canary=canary)
    with serving_in_thread(server), httpx.Client(base_url=server.url) as http:
        guard.start(interval=0.05)
        _send_holdout(http, wine_frame)
        _until(lambda: canary.fraction == 0.0)
        served = {http.post("/predict", json={"records": wine_frame[FEATURES].head(1).to_dict(orient="records")})
                  .json()["version"] for _ in range(30)}  # fmt: skip
        assert served == {1}  # the canary gets nothing any more

        # a person promotes the worse version anyway (no gate here): the guard rolls it back on its outcomes
        wb.set_alias("wine", "production", 2, reason="looks fine to me")
        _until(lambda: wb.get_model_version("wine@production").version == 1)
        guard.stop()
    stopped, rolled = guard.decisions
    assert (stopped.action, stopped.from_version, stopped.to_version) == ("canary_stopped", 2, 1)
    assert (rolled.action, rolled.from_version, rolled.to_version) == ("rollback", 2, 1)
    (entry,) = wb.audit_log(action="guard.canary_stopped")
    ab = entry.details["ab"]
    assert ab["verdict"] == "worse" and ab["a"] == 1 and ab["b"] == 2 and ab["p_value"] < 0.001
    assert ab["n_a"] + ab["n_b"] <= len(wine_frame) and min(ab["n_a"], ab["n_b"]) >= 30
    assert ab["value_a"] > 0.85 and ab["value_b"] < 0.6
    frame, counts = joined(ws, "wine")
    assert counts["outcomes"] == len(wine_frame) and counts["unknown"] == 0
    back = wb.audit_log(action="alias.moved")[-1]
    assert back.details["rollback"] is True and back.reason.startswith("auto-rollback of wine@production from "
                                                                       "version 2: version 2 is worse than version 1")
    (rolled_entry,) = wb.audit_log(action="guard.rolled_back")
    assert rolled_entry.details["ab"]["verdict"] == "worse" and rolled_entry.details["rolled_back_to"] == 1


def test_guard_policy_checks_live_options(ws):
    with pytest.raises(wb.ValidationError, match="not a live metric"):
        GuardPolicy(ab_metric="auc")
    with pytest.raises(wb.ValidationError, match="--ab-alpha"):
        GuardPolicy(ab_metric="accuracy", ab_alpha=0)


# ---------------------------------------------------------------------------------- team server


@pytest.mark.slow
def test_the_live_gate_is_judged_on_the_team_server_with_its_logs(tmp_path, wine_frame):
    """A client moving production is judged by the server on the server's prediction and outcome logs."""
    import subprocess

    from test_team_logging import client_env
    from test_team_server import VENV_BIN, add_user, make_workspace, start_server

    from workbench.workspace import init_workspace, use_workspace

    home = tmp_path / "team" / ".workbench"
    make_workspace(home, wine_frame)  # wine@1 production, wine@2 staging
    server_ws = init_workspace(home)
    use_workspace(server_ws)
    try:
        wb.set_gates("wine", LIVE_GATE)
    finally:
        use_workspace(None)
    log_served(server_ws, "wine", 1, 30, 30)
    log_served(server_ws, "wine", 2, 20, 0)
    token = add_user(home, "max", "maintainer")
    server = start_server(home)
    env = client_env(tmp_path / "client", server.url, token)

    def move(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "workbench"), "models", "alias", "wine", "production", "2", *extra],
                              capture_output=True, text=True, env={**env, "COLUMNS": "200"}, cwd=tmp_path,
                              timeout=120)  # fmt: skip

    try:
        refused = move()
        assert refused.returncode != 0 and "refused by its gates" in refused.stderr, refused.stderr
        assert "too few outcomes" in refused.stderr and "Traceback" not in refused.stderr
        log_served(server_ws, "wine", 2, 39, 1)  # written where the server reads: passes now
        moved = move()
        assert moved.returncode == 0 and "wine@production -> wine@2" in moved.stdout, moved.stderr
        server.tokens["max"] = token
        with server.client("max") as http:
            entries = http.get("/api/v1/audit", params={"action": "alias.moved"}).json()
        assert isinstance(entries, list), entries
        (gate,) = entries[-1]["details"]["gates"]
        assert gate["passed"] and gate["numbers"]["n_b"] == 60 and gate["numbers"]["verdict"] == "better"
    finally:
        server.stop()

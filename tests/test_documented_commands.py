"""Documented behaviour that no other test ran: each test follows README.md / docs/*.md and checks
that the command does what the page says (its output, exit code, audit entries, stored state),
not only that it runs. The CLI runs in this process (`run_cli_in_process`) wherever possible."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import httpx
import pandas as pd
import pytest
from conftest import run_cli_in_process
from model_fixtures import train_run

import workbench as wb

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]


def cli(capsys, *args: str) -> subprocess.CompletedProcess:
    return run_cli_in_process(capsys, *args)


def ok(capsys, *args: str) -> subprocess.CompletedProcess:
    """A command that must succeed (exit 0)."""
    proc = cli(capsys, *args)
    assert proc.returncode == 0, f"workbench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture()
def two_runs(ws, wine_frame) -> tuple[str, str]:
    """The wine snapshot and two finished runs that logged a model: a weak one and a good one."""
    wb.snapshot("wine", wine_frame)
    return train_run(C=0.0001), train_run(C=10.0)


# --------------------------------------------------------------------------------------------
# Registry from the command line (docs/models.md)


def test_promote_refused_by_a_gate_exits_2_with_every_reason_and_force_overrides_it(two_runs, capsys):
    weak, good = two_runs
    first = json.loads(ok(capsys, "promote", good, "--model", "wine", "--reason", "baseline", "--json").stdout)
    assert (first["name"], first["version"]) == ("wine", 1)
    ok(capsys, "models", "gate", "wine", "--min", "accuracy=0.9", "--beat", "accuracy", "--higher-is-better")

    refused = cli(capsys, "promote", weak, "--model", "wine")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())  # the one-line error, however the terminal wrapped it
    accuracy = wb.get_run(weak).metrics["accuracy"]
    assert f"Promotion of run {weak} to wine@production refused by its gates" in message
    assert f"accuracy >= 0.9: accuracy = {accuracy:.6g}" in message  # every failed gate, with its value
    assert "beat production on accuracy (higher is better)" in message
    assert "--force" in message  # the hint says how to override
    assert wb.get_model_version("wine@production").version == 1  # nothing moved
    (entry,) = wb.audit_log(action="gate.refused")
    assert entry.details["run_id"] == weak and not any(r["passed"] for r in entry.details["results"])

    forced = ok(capsys, "promote", weak, "--model", "wine", "--force", "--reason", "hotfix", "--json")
    assert json.loads(forced.stdout)["version"] == 2
    assert wb.get_model_version("wine@production").run_id == weak
    assert wb.audit_log(target="model:wine@production", action="alias.moved")[-1].reason == "hotfix"

    back = ok(capsys, "rollback", "wine", "--reason", "forced too early")
    assert "wine@1" in back.stdout and wb.get_model_version("wine@production").version == 1
    moved = wb.audit_log(target="model:wine@production", action="alias.moved")[-1]
    assert moved.reason == "forced too early" and moved.details["rollback"] is True
    again = json.loads(ok(capsys, "rollback", "wine", "--to", "2", "--json").stdout)
    assert again["version"] == 2 and wb.get_model_version("wine@production").version == 2
    unknown = cli(capsys, "rollback", "nope")
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_models_show_alias_and_card_html(two_runs, capsys, tmp_path):
    weak, good = two_runs
    ok(capsys, "promote", weak, "--model", "wine")
    ok(capsys, "promote", good, "--model", "wine", "--reason", "better <b>C</b>")
    moved = ok(capsys, "models", "alias", "wine", "staging", "1", "--reason", "keep the old one warm")
    assert "wine@staging -> wine@1" in moved.stdout
    assert wb.audit_log(target="model:wine@staging", action="alias.moved")[-1].reason == "keep the old one warm"

    shown = json.loads(ok(capsys, "models", "show", "wine", "--json").stdout)
    assert [(v["version"], v["run_id"], sorted(v["aliases"])) for v in shown["versions"]] == [
        (2, good, ["production"]), (1, weak, ["staging"])]  # fmt: skip
    table = ok(capsys, "models", "show", "wine").stdout
    assert good in table and weak in table and "staging" in table and "production" in table

    card = tmp_path / "card.html"
    wrote = ok(capsys, "models", "card", "wine@production", "--html", str(card))
    assert str(card) in wrote.stdout.replace("\n", "")
    html = card.read_text()
    assert html.lstrip().lower().startswith("<!doctype html>") and "<table>" in html
    assert "Content-Security-Policy" in html and "<script" not in html.lower()
    assert good in html and "&lt;b&gt;C&lt;/b&gt;" in html  # the reason shown, its HTML escaped
    markdown = ok(capsys, "models", "card", "wine@staging").stdout
    assert weak in markdown and "<html" not in markdown.lower()


# --------------------------------------------------------------------------------------------
# Automated rollback (docs/governance.md): p99 latency and input drift


def _promoted_twice(ws, wine_frame) -> tuple[str, str]:
    wb.snapshot("wine", wine_frame)
    first, second = train_run(C=1.0), train_run(C=10.0)
    wb.promote(first, "wine")
    wb.promote(second, "wine")  # production -> version 2, the one a guard judges
    return first, second


def test_guard_rolls_back_on_p99_latency(ws, wine_frame):
    from workbench.governance.autorollback import Guard, GuardPolicy, RequestWindow

    _promoted_twice(ws, wine_frame)
    window = RequestWindow(size=50)
    guard = Guard("wine@production", GuardPolicy(max_error_rate=None, max_p99_ms=500, min_requests=20), window, ws)
    for _ in range(30):
        window.record(2, 200, 0.050)  # fast answers: nothing to do
    assert guard.check() is None and guard.decisions == []
    for _ in range(19):
        window.record(2, 200, 0.050)
    window.record(2, 200, 0.900)  # 1 slow of 50: p99 (nearest rank) is 900 ms
    decision = guard.check()
    assert decision is not None and (decision.from_version, decision.to_version) == (2, 1)
    assert decision.reasons == ["p99 latency 900 ms > 500 ms over the last 50 requests"]
    assert wb.get_model_version("wine@production").version == 1
    moved = wb.audit_log(target="model:wine@production", action="alias.moved")[-1]
    assert moved.reason == "auto-rollback of wine@production from version 2: p99 latency 900 ms > 500 ms over the " \
                           "last 50 requests"  # fmt: skip


def _log_predictions(ws, model: str, version: int, rows: pd.DataFrame, at: datetime) -> None:
    """Prediction log lines as the server writes them (predictions/<model>/<date>-<pid>.jsonl),
    with the version's real predictions for `rows`."""
    from workbench.serving.predlog import predictions_dir

    estimator, _ = wb.load_model(f"{model}@{version}")
    predictions = estimator.predict(rows).tolist()
    folder = predictions_dir(ws, model)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{at:%Y%m%d}-{os.getpid()}.jsonl", "a") as handle:
        for n, (row, prediction) in enumerate(zip(rows.to_dict(orient="records"), predictions, strict=True)):
            handle.write(json.dumps({"at": at.isoformat(), "request_id": f"r{n}", "version": version,
                                     "latency_ms": 1.0, "input": row, "prediction": prediction}) + "\n")  # fmt: skip


def test_guard_rolls_back_on_input_drift_from_the_prediction_log(ws, wine_frame):
    from workbench.governance.autorollback import Guard, GuardPolicy, RequestWindow

    _promoted_twice(ws, wine_frame)
    policy = GuardPolicy(max_error_rate=None, max_drift_psi=0.3, min_requests=20)
    guard = Guard("wine@production", policy, RequestWindow(), ws, drift_every=0)
    assert guard.check() is None  # version 2 goes live for this guard now; nothing logged yet
    before = datetime.now(timezone.utc) - timedelta(hours=1)
    shifted = wine_frame[FEATURES].assign(alcohol=wine_frame.alcohol + 3.0)
    _log_predictions(ws, "wine", 2, shifted, before)  # logged before it went live: not its traffic
    assert guard.check() is None
    _log_predictions(ws, "wine", 2, wine_frame[FEATURES], datetime.now(timezone.utc))  # like training
    assert guard.check() is None
    _log_predictions(ws, "wine", 2, shifted, datetime.now(timezone.utc) + timedelta(seconds=1))
    decision = guard.check()
    assert decision is not None and (decision.from_version, decision.to_version) == (2, 1)
    (reason,) = decision.reasons
    assert reason.startswith("input drift: PSI of alcohol ") and reason.endswith(
        f"> 0.3 over {2 * len(wine_frame)} logged predictions")
    assert wb.get_model_version("wine@production").version == 1


def test_guard_command_passes_its_thresholds_to_the_guard(ws, capsys, monkeypatch, tmp_path):
    """`workbench guard` serves until Ctrl+C: what it hands the guarded server is checked instead."""
    import workbench.governance.autorollback as autorollback

    seen = {}
    monkeypatch.setattr(autorollback, "serve_guarded", lambda ref, policy, **options: seen.update(
        ref=ref, policy=policy, **options))  # fmt: skip
    token = tmp_path / "token"
    token.write_text("s3cret")
    token.chmod(0o600)
    ok(capsys, "guard", "wine@production", "--max-error-rate", "0.1", "--max-p99-ms", "250", "--max-drift-psi", "0.3",
       "--window", "100", "--min-requests", "10", "-p", "8123", "--token-file", str(token))  # fmt: skip
    assert seen["ref"] == "wine@production" and (seen["window"], seen["port"], seen["token"]) == (100, 8123, "s3cret")
    assert seen["policy"] == autorollback.GuardPolicy(max_error_rate=0.1, max_p99_ms=250, max_drift_psi=0.3,
                                                      min_requests=10)  # fmt: skip
    monkeypatch.setenv("WORKBENCH_SERVE_TOKEN", "from-env")  # "guard takes the same variable" as serve
    ok(capsys, "guard", "wine@production")
    assert seen["token"] == "from-env" and seen["policy"] == autorollback.GuardPolicy()  # documented defaults
    assert (seen["window"], seen["port"], seen["host"]) == (200, 8000, "127.0.0.1")
    bad = cli(capsys, "guard", "wine@production", "--max-drift-psi", "-1")
    assert bad.returncode == 2 and "--max-drift-psi must be positive" in bad.stderr


# --------------------------------------------------------------------------------------------
# Monitoring (docs/models.md): --since and --fail-on-drift


def test_monitor_fails_on_drift_and_since_limits_the_window(ws, two_runs, wine_frame, capsys):
    weak, good = two_runs
    wb.promote(good, "wine")
    day_before = datetime.now(timezone.utc) - timedelta(days=1)
    _log_predictions(ws, "wine", 1, wine_frame[FEATURES].assign(proline=wine_frame.proline * 2), day_before)
    _log_predictions(ws, "wine", 1, wine_frame[FEATURES], datetime.now(timezone.utc))

    everything = cli(capsys, "monitor", "wine", "--fail-on-drift", "--json")
    assert everything.returncode == 1  # for CI: the drifted day is in the window
    report = json.loads(everything.stdout)
    assert report["live_rows"] == 2 * len(wine_frame) and "proline" in report["drifted"]
    today = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat(timespec="minutes")
    recent = ok(capsys, "monitor", "wine", "--since", today, "--fail-on-drift", "--json")
    report = json.loads(recent.stdout)
    assert report["live_rows"] == len(wine_frame) and report["drifted"] == []
    table = ok(capsys, "monitor", "wine", "--since", today).stdout
    assert "proline" in table and "DRIFT" not in table
    assert "DRIFT" in ok(capsys, "monitor", "wine").stdout  # without --fail-on-drift: shown, exit 0


# --------------------------------------------------------------------------------------------
# Configuration (README.md): WORKBENCH_USER, WORKBENCH_SERVE_TOKEN, WORKBENCH_LOCK_TIMEOUT


def test_workbench_user_is_the_recorded_actor(ws, wine_frame, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_USER", "ana")
    path = tmp_path / "wine.csv"
    wine_frame.head(20).to_csv(path, index=False)
    ok(capsys, "snapshot", "add", "wine", str(path))
    assert wb.get_snapshot("wine").creator == "ana"
    (entry,) = json.loads(ok(capsys, "audit", "--action", "snapshot.registered", "--json").stdout)
    assert entry["actor"] == "ana" and entry["target"] == "wine@1"
    monkeypatch.setenv("WORKBENCH_USER", "ben")
    wb.snapshot("wine", wine_frame.head(30))
    assert [e.actor for e in wb.audit_log(action="snapshot.registered")] == ["ana", "ben"]


def test_serve_token_from_the_environment_protects_wb_serve(two_runs, monkeypatch, wine_frame):
    weak, good = two_runs
    wb.promote(good, "wine")
    monkeypatch.setenv("WORKBENCH_SERVE_TOKEN", "s3cret")
    rows = {"records": wine_frame[FEATURES].head(2).to_dict(orient="records")}
    with wb.serve("wine@production", log_predictions=False) as server, httpx.Client(base_url=server.url) as http:
        assert http.post("/predict", json=rows).status_code == 401
        assert http.post("/predict", json=rows, headers={"Authorization": "Bearer wrong"}).status_code == 401
        answer = http.post("/predict", json=rows, headers={"Authorization": "Bearer s3cret"})
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
        assert http.get("/metadata").status_code == 401
        assert http.get("/health").status_code == 200  # for load balancers, as documented


HOLDER = textwrap.dedent(
    """
    import sys, time
    import duckdb
    con = duckdb.connect(sys.argv[1])
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_a_catalog_that_stays_busy_is_exit_code_3(ws, capsys, monkeypatch):
    monkeypatch.setenv("WORKBENCH_LOCK_TIMEOUT", "1")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws.catalog_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        started = time.monotonic()
        busy = cli(capsys, "snapshot", "list")
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert busy.returncode == 3, busy.stderr
    assert "stayed locked by another process for 1 s" in " ".join(busy.stderr.split())
    assert "WORKBENCH_LOCK_TIMEOUT" in busy.stderr and "Traceback" not in busy.stderr
    assert 0.9 <= waited < 10  # it waited for the bounded time, not forever
    assert ok(capsys, "snapshot", "list").returncode == 0  # free again: works at once


# --------------------------------------------------------------------------------------------
# Explain and fairness on another snapshot (docs/governance.md)


def test_explain_and_fairness_cli_on_a_snapshot_of_their_own(two_runs, wine_frame, capsys):
    weak, good = two_runs
    ok(capsys, "promote", good, "--model", "wine")
    wb.snapshot("wine-holdout", wine_frame.iloc[::3])
    ok(capsys, "snapshot", "add", "wine-styles", "--sql",
       "select *, if(alcohol >= 13, 'strong', 'light') as style from wine")  # fmt: skip

    explained = json.loads(ok(capsys, "explain", "wine@production", "--snapshot", "wine-holdout", "--target", "target",
                              "--repeats", "2", "--top", "1", "--json").stdout)  # fmt: skip
    assert explained["snapshot"] == "wine-holdout@1" and explained["run_id"] == good
    assert sorted(r["feature"] for r in explained["importance"]) == sorted(FEATURES)
    assert list(explained["partial_dependence"]) == [explained["importance"][0]["feature"]]  # --top 1
    assert any(k.startswith("explain.importance.") for k in wb.get_run(good).metrics)

    fair = json.loads(ok(capsys, "fairness", "wine@production", "--sensitive", "style", "--snapshot", "wine-styles",
                         "--target", "target", "--positive", "1", "--json").stdout)  # fmt: skip
    assert fair["snapshot"] == "wine-styles@1" and fair["positive"] == 1
    groups = {g["group"]: g for g in fair["groups"]}
    assert set(groups) == {"strong", "light"}
    assert sum(g["count"] for g in groups.values()) == len(wine_frame)
    rates = [g["selection_rate"] for g in groups.values()]
    assert fair["demographic_parity_difference"] == pytest.approx(max(rates) - min(rates))
    assert wb.get_run(good).metrics["fairness.demographic_parity_difference"] == pytest.approx(
        fair["demographic_parity_difference"])
    table = ok(capsys, "fairness", "wine@production", "--sensitive", "style", "--snapshot", "wine-styles",
               "--no-log").stdout  # fmt: skip
    assert "demographic parity difference" in table and "strong" in table
    missing = cli(capsys, "explain", "wine@production", "--snapshot", "nope")
    assert missing.returncode == 2 and "nope" in missing.stderr


# --------------------------------------------------------------------------------------------
# Runs and sweeps with kernels (docs/runs.md)

SQUARE = "import workbench as wb\nwb.log_metric('sq', n * n)"


@pytest.mark.slow
def test_run_in_the_background_and_with_a_new_parameter(ws, notebook, capsys):
    nb = notebook("square", "n = 2", SQUARE)
    started = time.monotonic()
    queued = json.loads(ok(capsys, "run", str(nb), "-p", "n", "3", "--background", "--json").stdout)
    assert time.monotonic() - started < 5 and queued["status"] in ("queued", "running")  # returned at once
    deadline = time.monotonic() + 120
    while (run := wb.get_run(queued["run_id"])).status in ("queued", "running"):
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    assert run.status == "finished" and run.metrics == {"sq": 9}

    unknown = cli(capsys, "run", str(nb), "-p", "extra", "1")
    assert unknown.returncode == 2 and "Unknown parameter 'extra'" in unknown.stderr
    assert "--allow-new-params" in unknown.stderr
    injected = json.loads(ok(capsys, "run", str(nb), "-p", "extra", "[1, 2]", "--allow-new-params", "--json").stdout)
    assert injected["status"] == "finished" and injected["params"]["extra"] == [1, 2]  # read as YAML
    assert len(wb.runs()) == 2  # the refused run recorded nothing


@pytest.mark.slow
def test_random_sweep_samples_in_range_and_the_same_seed_gives_the_same_values(ws, notebook, capsys):
    nb = notebook("ranged",
                  "lr = 0.1\nalpha = 0.5\nn = 1", "import workbench as wb\nwb.log_metric('m', lr * alpha * n)")
    args = ["sweep", str(nb), "--random", "3", "--grid", "lr=loguniform(0.001,0.5)", "--grid", "alpha=uniform(2,3)",
            "--grid", "n=1,2", "-j", "2", "--json"]  # fmt: skip
    first = json.loads(ok(capsys, *args, "--seed", "7").stdout)
    again = json.loads(ok(capsys, *args, "--seed", "7").stdout)

    def sampled(result) -> list[tuple[float, float, int]]:
        runs = wb.runs(filter=f"sweep_id = '{result['sweep_id']}'")
        assert len(runs) == 3 and set(runs["status"]) == {"finished"}
        return sorted(zip(runs["params.lr"], runs["params.alpha"], runs["params.n"], strict=True))

    values = sampled(first)
    assert all(0.001 <= lr <= 0.5 and 2 <= alpha <= 3 and n in (1, 2) for lr, alpha, n in values), values
    assert len({lr for lr, _, _ in values}) == 3  # drawn, not a grid
    assert sampled(again) == values  # the same seed, the same parameter sets
    for run_id in wb.runs(filter=f"sweep_id = '{first['sweep_id']}'")["run_id"]:
        run = wb.get_run(run_id)
        assert math.isclose(run.metrics["m"], run.params["lr"] * run.params["alpha"] * run.params["n"])
    refused = cli(capsys, "sweep", str(nb), "--grid", "lr=uniform(0.1,0.2)")
    assert refused.returncode == 2 and "--random" in refused.stderr  # ranges need a random sweep


# --------------------------------------------------------------------------------------------
# Pipelines (docs/governance.md)

PREPARE = "import workbench as wb\nwb.log_metric('prepared', scale)"
TRAIN = (
    "import workbench as wb\nfrom sklearn.linear_model import LogisticRegression",
    'data = wb.load_snapshot(snapshot)\nX, y = data[["alcohol", "proline"]], data["target"]\n'
    "model = LogisticRegression(max_iter=2000).fit(X, y)\nwb.log_metric('accuracy', model.score(X, y))\n"
    'wb.log_param("upstream_seen", upstream_run)\nwb.log_model(model, "wine", sample=X.head())',
)
BREAKS = "raise RuntimeError('the data source is down')"


@pytest.mark.slow
def test_pipeline_run_cli_runs_the_steps_in_order_and_audits_a_failure(ws, tmp_path, notebook, wine_frame, capsys):
    notebook("prepare", "scale = 1.0", PREPARE)
    notebook("train", 'snapshot = "wine"\nupstream_run = ""', *TRAIN)
    notebook("broken", 'snapshot = "wine"', BREAKS)
    (tmp_path / "workbench.yaml").write_text(textwrap.dedent("""
        pipelines:
          retrain:
            inputs: {snapshot: wine}
            steps:
              - notebook: prepare.ipynb
                params: {scale: 2.0}
              - notebook: train.ipynb
            promote: {model: wine, alias: production}
          flaky:
            inputs: {snapshot: wine}
            steps:
              - notebook: prepare.ipynb
              - notebook: broken.ipynb
            promote: {model: wine}
    """).lstrip())  # fmt: skip
    wb.snapshot("wine", wine_frame)

    done = json.loads(ok(capsys, "pipeline", "run", "retrain", "--json").stdout)
    assert done["status"] == "finished"
    prepare_id, train_id = (step["selected"] for step in done["steps"])
    prepared, trained = wb.get_run(prepare_id), wb.get_run(train_id)
    assert prepared.params["scale"] == 2.0 and prepared.metrics["prepared"] == 2.0
    assert trained.parent_run_id == prepare_id and trained.params["upstream_seen"] == prepare_id  # in order
    assert trained.params["snapshot"] == "wine@1" and trained.inputs == ["wine@1"]
    assert [(r.tags["pipeline"], r.tags["pipeline_step"]) for r in (prepared, trained)] == [("retrain", "0"),
                                                                                          ("retrain", "1")]
    assert wb.get_model_version("wine@production").run_id == train_id
    (finished,) = wb.audit_log(target="pipeline:retrain")
    assert finished.action == "pipeline.finished"

    failed = cli(capsys, "pipeline", "run", "flaky")
    assert failed.returncode == 1 and "Pipeline flaky failed" in " ".join(failed.stderr.split())
    (entry,) = wb.audit_log(target="pipeline:flaky")
    assert entry.action == "pipeline.failed" and entry.details["inputs"] == {"wine": "wine@1"}
    broken = wb.runs(experiment="pipeline-flaky", filter="status = 'failed'")
    assert len(broken) == 1 and "data source is down" in wb.get_run(broken["run_id"].iloc[0]).error["evalue"]
    assert wb.get_model_version("wine@production").run_id == train_id  # a failed pipeline promotes nothing

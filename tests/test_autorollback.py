"""Automated rollback on a real server on loopback: a version that fails on predict is rolled back
and the audit log says why."""

from __future__ import annotations

import time
import warnings

import httpx
import numpy as np
import pytest
from model_fixtures import train_run

import workbench as wb
from workbench.governance.autorollback import Guard, GuardPolicy, RequestWindow, instrument
from workbench.serving.server import build_server, serving_in_thread

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]


def broken_run() -> str:
    """A real, loadable model whose predict raises (its coefficients do not match its inputs)."""
    from sklearn.linear_model import LogisticRegression

    data = wb.load_snapshot("wine")
    with warnings.catch_warnings():  # convergence does not matter: this model is meant to fail
        warnings.simplefilter("ignore")
        model = LogisticRegression(max_iter=50).fit(data[FEATURES], data["target"])
    model.coef_ = np.zeros((3, len(FEATURES) + 1))  # X @ coef_.T now fails with a shape error
    wb.log_model(model, "wine", sample=data[FEATURES].head())
    run_id = wb.active_run_id()
    wb.end_run()
    return run_id


def test_window_statistics_and_policy():
    window = RequestWindow(size=4)
    for status, latency in [(200, 0.010), (500, 0.020), (422, 9.0), (200, 0.030), (200, 0.040), (500, 0.050)]:
        window.record(1, status, latency)
    stats = window.stats(1)  # the 422 is ignored; the first 200 fell out of the window of 4
    assert (stats.requests, stats.errors) == (4, 2) and stats.error_rate == 0.5
    assert stats.p99_ms == pytest.approx(50.0)
    assert window.stats(2).requests == 0
    policy = GuardPolicy(max_error_rate=0.25, max_p99_ms=45, min_requests=4)
    reasons = policy.breaches(stats)
    assert len(reasons) == 2 and "error rate 0.50 > 0.25" in reasons[0] and "p99 latency 50 ms > 45 ms" in reasons[1]
    assert GuardPolicy(max_error_rate=0.25, min_requests=5).breaches(stats) == []  # too few requests to judge
    with pytest.raises(wb.ValidationError, match="between 0 and 1"):
        GuardPolicy(max_error_rate=2)


@pytest.mark.slow
def test_guard_rolls_back_a_failing_version_on_a_real_server(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    good, bad = train_run(), broken_run()
    wb.promote(good)
    wb.promote(bad)  # production -> version 2, which fails on every request
    window = RequestWindow(size=50)
    server = build_server("wine@production", port=_free_port(), ws=ws)
    instrument(server, window)
    guard = Guard("wine@production", GuardPolicy(max_error_rate=0.1, min_requests=10), window, ws)
    rows = {"records": wine_frame[FEATURES].head(2).to_dict(orient="records")}
    with serving_in_thread(server), httpx.Client(base_url=server.url) as http:
        guard.start(interval=0.05)
        statuses = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            answer = http.post("/predict", json=rows)
            statuses.append(answer.status_code)
            if answer.status_code == 200 and answer.json()["version"] == 1:
                break
        guard.stop()
        assert statuses[0] == 500 and statuses[-1] == 200, statuses  # served by version 1 again
        assert http.post("/predict", json={"records": []}).status_code == 400  # client errors are not counted
    assert [(d.from_version, d.to_version) for d in guard.decisions] == [(2, 1)]
    assert wb.get_model_version("wine@production").version == 1
    moves = wb.audit_log(target="model:wine@production", action="alias.moved")
    assert len(moves) == 3 and moves[-1].details["rollback"] is True
    assert moves[-1].reason.startswith("auto-rollback of wine@production from version 2: error rate")
    guard.run(once=True)  # version 1 holds the alias now; nothing to do, and never back to 2
    assert len(guard.decisions) == 1


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _hammer(http: httpx.Client, rows: dict, until, seconds: float = 15) -> list[int]:
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        statuses.append(http.post("/predict", json=rows).status_code)
    return statuses


@pytest.mark.slow
def test_a_breach_with_nothing_to_roll_back_to_is_reported_and_keeps_being_reported(ws, wine_frame):
    """It used to raise into a discarded error handler and then never judge that version again."""
    wb.snapshot("wine", wine_frame)
    wb.promote(broken_run())  # the only version
    window = RequestWindow(size=50)
    server = build_server("wine@production", port=_free_port(), ws=ws)
    instrument(server, window)
    guard = Guard("wine@production", GuardPolicy(max_error_rate=0.1, min_requests=10), window, ws, report_every=0.3)
    rows = {"records": wine_frame[FEATURES].head(1).to_dict(orient="records")}
    with serving_in_thread(server), httpx.Client(base_url=server.url) as http:
        guard.start(interval=0.05)
        _hammer(http, rows, lambda: len(wb.audit_log(action="guard.breach")) >= 2)
        guard.stop()
    breaches = wb.audit_log(action="guard.breach")
    assert len(breaches) >= 2, "the breach must be reported, and reported again while it lasts"
    assert breaches[0].target == "model:wine@production" and breaches[0].details["rolled_back_to"] is None
    assert "error rate" in breaches[0].details["reasons"][0]
    assert all(d.to_version is None for d in guard.decisions)
    assert "nothing to roll back to" in guard.decisions[0].summary
    assert wb.get_model_version("wine@production").version == 1


@pytest.mark.slow
def test_a_version_moved_back_by_hand_is_judged_again(ws, wine_frame):
    """It used to be ignored for good once the guard had rolled away from it (40 of 80 failed silently)."""
    wb.snapshot("wine", wine_frame)
    wb.promote(train_run())
    wb.promote(broken_run())
    window = RequestWindow(size=50)
    server = build_server("wine@production", port=_free_port(), ws=ws)
    instrument(server, window)
    guard = Guard("wine@production", GuardPolicy(max_error_rate=0.1, min_requests=10), window, ws)
    rows = {"records": wine_frame[FEATURES].head(1).to_dict(orient="records")}
    with serving_in_thread(server), httpx.Client(base_url=server.url) as http:
        guard.start(interval=0.05)
        _hammer(http, rows, lambda: len(guard.decisions) >= 1)
        wb.set_alias("wine", "production", 2, reason="I think it is fine")  # a person overrides the guard
        _hammer(http, rows, lambda: len(guard.decisions) >= 2)
        guard.stop()
    assert [(d.from_version, d.to_version) for d in guard.decisions] == [(2, 1), (2, 1)]
    rejudged = wb.audit_log(action="guard.rejudging")
    assert len(rejudged) == 1 and rejudged[0].details["version"] == 2
    assert wb.get_model_version("wine@production").version == 1


@pytest.mark.slow
def test_nan_made_inside_the_model_is_an_error_not_a_silent_prediction(ws):
    """The server predicted under assume_finite=True: NaN from log(negative) became class 0, status 200."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.uniform(0.1, 10, 200), "b": rng.uniform(0.1, 10, 200)})
    y = (X.a > X.b).astype(int)
    model = make_pipeline(FunctionTransformer(np.log), LogisticRegression()).fit(X, y)
    wb.log_model(model, "logs", sample=X.head())
    run_id = wb.active_run_id()
    wb.end_run()
    wb.promote(run_id, "logs")
    window = RequestWindow(size=50)
    server = build_server("logs@production", port=_free_port(), ws=ws)
    instrument(server, window)
    with serving_in_thread(server), httpx.Client(base_url=server.url) as http:
        fine = http.post("/predict", json={"records": [{"a": 2.0, "b": 1.0}]})
        assert fine.status_code == 200 and fine.json()["predictions"] == [1]
        bad = http.post("/predict", json={"records": [{"a": -2.0, "b": 1.0}]})
        assert bad.status_code == 500 and "NaN" in bad.json()["error"]
        assert bad.headers.get("x-model-version") == "1"
        metrics = http.get("/metrics").text
    assert 'workbench_errors_total{kind="model"} 1.0' in metrics
    assert window.stats(1).errors == 1  # what a guard judges

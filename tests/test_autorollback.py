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

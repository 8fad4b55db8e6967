"""The model server's live-quality parts over real HTTP on loopback (issue 19): the prediction log's
row and probabilities, POST /feedback, sticky canary keys and shadow predictions."""

from __future__ import annotations

import json
import statistics
import time

import httpx
import pytest
from model_fixtures import train_run

import workbench as wb
from workbench.serving.app import key_share
from workbench.serving.predlog import predictions_dir, wait_for_lines

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]
TOKEN = {"Authorization": "Bearer s3cret"}


@pytest.fixture()
def served(ws, wine_frame):
    """Version 1 (production) and version 2 of the wine classifier."""
    wb.snapshot("wine", wine_frame)
    first, second = train_run(C=0.01), train_run(C=10.0)
    wb.promote(first)
    wb.promote(second, alias="candidate")
    return {"rows": wine_frame[FEATURES], "target": wine_frame["target"]}


def logged(ws, count: int) -> list[dict]:
    """The prediction log's lines once `count` of them are written."""
    folder = predictions_dir(ws, "wine")
    assert wait_for_lines(folder, count) >= count
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()]


def test_log_lines_carry_the_row_and_the_class_probabilities(served, ws):
    rows = served["rows"].head(3)
    with wb.serve("wine@production") as server, httpx.Client(base_url=server.url) as http:
        answer = http.post("/predict", json={"records": rows.to_dict(orient="records")}).json()
        assert http.get("/metadata").json()["log_proba"] is True
    lines = logged(ws, 3)
    assert [line["row"] for line in lines] == [0, 1, 2]
    assert {line["request_id"] for line in lines} == {answer["request_id"]}
    for line, prediction in zip(lines, answer["predictions"], strict=True):
        assert set(line["proba"]) == {"0", "1", "2"} and abs(sum(line["proba"].values()) - 1) < 1e-9
        assert max(line["proba"], key=line["proba"].get) == str(prediction) == str(line["prediction"])
        assert "shadow" not in line

    with wb.serve("wine@production", log_proba=False) as server, httpx.Client(base_url=server.url) as http:
        http.post("/predict", json={"records": rows.head(1).to_dict(orient="records")})
    assert "proba" not in logged(ws, 4)[-1]


def test_sticky_keys_get_the_same_version_and_spread_by_the_fraction(served):
    record = served["rows"].head(1).to_dict(orient="records")
    with wb.serve("wine@production", canary="2=0.3") as server, httpx.Client(base_url=server.url) as http:

        def version(key: str) -> int:
            return http.post("/predict", json={"records": record}, headers={"X-Workbench-Key": key}).json()["version"]

        for key in ("alice", "bob", "carol"):
            seen = {version(key) for _ in range(50)}
            assert seen == {2 if key_share(key, "wine") < 0.3 else 1}, key
        keys = [f"caller-{n}" for n in range(300)]
        canary = sum(version(key) == 2 for key in keys)
        unkeyed = {http.post("/predict", json={"records": record}).json()["version"] for _ in range(60)}
    assert 0.2 < canary / len(keys) < 0.4
    assert unkeyed == {1, 2}  # without the header the split stays random
    assert key_share("alice", "wine") != key_share("alice", "other")  # independent between models


def test_feedback_records_single_and_batched_outcomes_with_the_predict_auth(served, ws):
    from workbench.quality.outcomes import outcomes_frame

    rows = served["rows"].head(4).to_dict(orient="records")
    folder = ws.root / "outcomes" / "wine"
    with wb.serve("wine@production", token="s3cret") as server, httpx.Client(base_url=server.url) as http:
        request_id = http.post("/predict", json={"records": rows}, headers=TOKEN).json()["request_id"]
        refused = http.post("/feedback", json={"request_id": request_id, "outcome": 1})
        assert refused.status_code == 401
        assert not folder.exists() or not any(folder.iterdir())

        single = http.post("/feedback", json={"request_id": request_id, "row": 0, "outcome": 1}, headers=TOKEN)
        assert single.status_code == 200, single.text
        batch = {"outcomes": [{"request_id": request_id, "row": n, "outcome": n % 3} for n in (1, 2, 3)]}
        answered = http.post("/feedback", json=batch, headers=TOKEN)
        assert answered.status_code == 200, answered.text
        written = sorted(path.read_bytes() for path in folder.iterdir())

        bad = [
            b"{not json",
            b"[1, 2]",
            json.dumps({"outcomes": {"request_id": request_id}}).encode(),
            json.dumps({"outcomes": []}).encode(),
            json.dumps({"outcomes": [1]}).encode(),
            json.dumps({"outcomes": [{"request_id": request_id, "outcome": 1}], "extra": 1}).encode(),
            json.dumps({"request_id": "no spaces allowed", "outcome": 1}).encode(),
            json.dumps({"request_id": request_id, "row": -1, "outcome": 1}).encode(),
            json.dumps({"request_id": request_id, "outcome": {"nested": 1}}).encode(),
            json.dumps({"outcomes": [{"request_id": request_id, "outcome": 1}, {"request_id": 7}]}).encode(),
        ]  # fmt: skip
        for body in bad:
            answer = http.post("/feedback", content=body, headers={**TOKEN, "content-type": "application/json"})
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["error"] and answer.json()["hint"], answer.text
        too_large = http.post("/feedback", content=b"x" * (9 << 20), headers=TOKEN)
        assert too_large.status_code == 413 and "outcomes" in too_large.json()["hint"]
        assert 'workbench_errors_total{kind="feedback"} 11.0' in http.get("/metrics").text
    assert sorted(path.read_bytes() for path in folder.iterdir()) == written  # the bad bodies wrote nothing
    frame = outcomes_frame(ws, "wine")
    assert sorted(zip(frame["row"], frame["outcome"], strict=True)) == [(0, 1), (1, 1), (2, 2), (3, 0)]
    assert set(frame["request_id"]) == {request_id}


def _answers(url: str, records: list[dict]) -> list[dict]:
    with httpx.Client(base_url=url) as http:
        answers = [http.post("/predict", json={"records": [record]}).json() for record in records]
    return [{k: v for k, v in a.items() if k != "request_id"} for a in answers]


def test_shadow_never_changes_answers_and_logs_its_own_predictions(served, ws):
    records = served["rows"].to_dict(orient="records")
    with wb.serve("wine@production", log_predictions=False) as plain:
        expected = _answers(plain.url, records)
    with wb.serve("wine@production", shadow=2) as server:
        with httpx.Client(base_url=server.url) as http:
            ids = [http.post("/predict", json={"records": [record]}).json()["request_id"] for record in records[:20]]
        answers = _answers(server.url, records)
        lines = logged(ws, 2 * (len(records) + 20))
        meta = httpx.get(f"{server.url}/metadata").json()
    assert answers == expected
    shadow = [line for line in lines if line.get("shadow")]
    served_lines = [line for line in lines if not line.get("shadow")]
    assert {line["version"] for line in shadow} == {2} and {line["version"] for line in served_lines} == {1}
    assert sorted(line["request_id"] for line in shadow) == sorted(line["request_id"] for line in served_lines)
    assert {line["request_id"] for line in shadow} >= set(ids)
    estimator, _ = wb.load_model("wine@2")
    offline = dict(zip(range(len(records)), estimator.predict(served["rows"]).tolist(), strict=True))
    by_input = {json.dumps(record, sort_keys=True): n for n, record in enumerate(records)}
    for line in shadow:
        assert line["prediction"] == offline[by_input[json.dumps(line["input"], sort_keys=True)]]
        assert line["row"] == 0 and set(line["proba"]) == {"0", "1", "2"}
    assert meta["shadow"]["version"] == 2 and meta["shadow"]["dropped"] == 0
    assert meta["shadow"]["predicted"] == len(records) + 20
    # the drift report is about what was answered: the shadow's lines are not live traffic
    report = wb.drift_report("wine@production")
    assert report.live_rows == len(served_lines)


def test_a_shadow_the_requests_do_not_fit_is_counted_and_changes_nothing(served, ws):
    """Version 3 takes two of the four columns: every request is refused by the shadow, answered as before."""
    wb.promote(train_run(features=["alcohol", "proline"]), alias="candidate")
    records = served["rows"].head(10).to_dict(orient="records")
    with wb.serve("wine@production", shadow=3) as server:
        answers = _answers(server.url, records)
        lines = logged(ws, len(records))
        time.sleep(0.2)  # the shadow worker's batch
        meta = httpx.get(f"{server.url}/metadata").json()
    assert all(a["version"] == 1 and len(a["predictions"]) == 1 for a in answers)
    assert meta["shadow"] == {"version": 3, "predicted": 0, "dropped": 0, "failed": len(records), "queued": 0}
    assert not any(line.get("shadow") for line in lines)


def test_shadow_keeps_the_primary_latency_within_a_bound(served):
    """Requests alternate between a server with a shadow and one without, so load on the machine hits both."""
    record = served["rows"].head(1).to_dict(orient="records")
    timings: dict[str, list[float]] = {"off": [], "on": []}
    with (
        wb.serve("wine@production") as off,
        wb.serve("wine@production", shadow=2) as on,
        httpx.Client() as http,
    ):
        for _ in range(20):  # warm up both
            for server in (off, on):
                http.post(f"{server.url}/predict", json={"records": record})
        for _ in range(200):
            for label, server in (("off", off), ("on", on)):
                started = time.perf_counter()
                assert http.post(f"{server.url}/predict", json={"records": record}).status_code == 200
                timings[label].append(time.perf_counter() - started)
    median_off, median_on = statistics.median(timings["off"]), statistics.median(timings["on"])
    print(f"median latency: shadow off {median_off * 1000:.2f} ms, on {median_on * 1000:.2f} ms")
    assert median_on <= 1.5 * median_off + 0.005, (median_on, median_off)


def test_a_full_shadow_queue_drops_work_and_counts_it(served, ws):
    from workbench.serving.inputs import conform
    from workbench.serving.models import Shadow, load_version
    from workbench.serving.predlog import PredictionLogger

    model = load_version(ws, "wine@2")
    shadow = Shadow(model, PredictionLogger(ws, "wine"), capacity=2)  # not started: nothing drains the queue
    inputs = conform(served["rows"].head(1), model.schema)
    started = time.perf_counter()
    for n in range(5):
        shadow.submit(f"r{n}", inputs, model.schema)
    assert time.perf_counter() - started < 0.05  # never waits
    assert shadow.status() == {"version": 2, "predicted": 0, "dropped": 3, "failed": 0, "queued": 2}


def test_shadow_options_are_checked(served, cli):
    with pytest.raises(wb.ValidationError, match="--shadow needs the prediction log"):
        wb.serve("wine@production", shadow=2, log_predictions=False)
    with pytest.raises(wb.ValidationError, match="Invalid --shadow"):
        wb.serve("wine@production", shadow="two")
    proc = cli("serve", "wine@production", "--shadow", "2", "--no-log", "--port", "1")
    assert proc.returncode == 2 and "--shadow needs the prediction log" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr

"""Issue 19 end to end on a real model server on loopback: a labelled hold-out set goes through
/predict with a canary, its outcomes come back through POST /feedback, some late, some twice, some
for ids nobody was given, and the live accuracy of each version equals the offline accuracy of that
version's model on exactly the rows it answered; the A/B report compares the two."""

from __future__ import annotations

import time
import uuid

import httpx
import pandas as pd
import pytest
from model_fixtures import train_run
from sklearn.metrics import accuracy_score

import workbench as wb
from workbench.quality.abtest import ab_report
from workbench.quality.outcomes import joined

pytestmark = pytest.mark.slow

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]


def test_live_accuracy_per_version_equals_offline_accuracy_on_the_same_rows(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    wb.promote(train_run(C=0.001), "wine", alias="production")  # v1: weak
    wb.promote(train_run(C=10.0), "wine", alias="staging")  # v2: strong
    rows = wine_frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    answered: list[tuple[str, int, dict, int]] = []  # request_id, version, record, target
    with wb.serve("wine@production", canary="2=0.5") as server, httpx.Client(base_url=server.url) as http:
        records = rows[FEATURES].to_dict(orient="records")
        for record, target in zip(records, rows["target"], strict=True):
            answer = http.post("/predict", json={"records": [record]}).json()
            answered.append((answer["request_id"], answer["version"], record, int(target)))
        early, late = answered[: len(answered) // 2], answered[len(answered) // 2 :]
        feedback = [{"request_id": rid, "outcome": target} for rid, _, _, target in early]
        first = http.post("/feedback", json={"outcomes": feedback}).json()
        # the same outcomes again, one with another (wrong) label: the first one received counts
        again = [{**item, "outcome": (item["outcome"] + 1) % 3} for item in feedback[:5]] + feedback[5:10]
        repeated = http.post("/feedback", json={"outcomes": again}).json()
        strangers = http.post("/feedback", json={"outcomes": [{"request_id": uuid.uuid4().hex, "outcome": 1}
                                                              for _ in range(7)]}).json()  # fmt: skip
        time.sleep(0.5)  # labels arrive later for the second half, one request at a time
        for rid, _, _, target in late:
            assert http.post("/feedback", json={"request_id": rid, "outcome": target}).status_code == 200
    assert first["recorded"] == len(early) and repeated["duplicates"] == 10 and strangers["unknown"] == 7

    frame, counts = joined(ws, "wine")
    assert counts["matched"] == len(answered) and counts["pending"] == 0
    assert counts["duplicates"] == 10 and counts["unknown"] == 7

    quality = wb.live_quality("wine", window="1d", since="1d")
    table = quality.table[~quality.table["shadow"]]
    for version in (1, 2):
        served = [(record, target) for _, v, record, target in answered if v == version]
        assert len(served) > 20, f"the canary split gave version {version} only {len(served)} rows"
        model, _ = wb.load_model(f"wine@{version}")
        frame_v = pd.DataFrame([record for record, _ in served])[FEATURES]
        offline = accuracy_score([target for _, target in served], model.predict(frame_v))
        live = table[table["version"] == version]
        assert int(live["outcomes"].sum()) == len(served)
        assert float(live["accuracy"].iloc[0]) == pytest.approx(offline, abs=1e-12)

    report = ab_report(frame, task=quality.task).to_dict()
    accuracy = [r for r in report["results"] if r["metric"] == "accuracy"]
    assert accuracy and {accuracy[0]["a"], accuracy[0]["b"]} == {1, 2}


def test_failed_requests_are_the_live_error_rate_of_their_version(ws, wine_frame):
    """A version whose predict raises answers 500 to every request: each is logged as a failure of
    that version, so its live error rate is 1.0 while the healthy canary's is 0."""
    from test_autorollback import broken_run

    wb.snapshot("wine", wine_frame)
    wb.promote(broken_run(), "wine", alias="production")  # v1: every predict fails
    wb.promote(train_run(C=1.0), "wine", alias="staging")  # v2: healthy
    records = wine_frame[FEATURES].head(60).to_dict(orient="records")
    with wb.serve("wine@production", canary="2=0.5") as server, httpx.Client(base_url=server.url) as http:
        statuses = [http.post("/predict", json={"records": [record]}).status_code for record in records]
    assert set(statuses) == {200, 500}
    table = wb.live_quality("wine", window="1d", since="1d").table
    by_version = {int(row.version): row for row in table.itertuples()}
    assert by_version[1].errors == statuses.count(500) and by_version[1].requests == 0
    assert by_version[1].error_rate == 1.0
    assert by_version[2].errors == 0 and by_version[2].error_rate == 0.0
    assert by_version[2].requests == statuses.count(200)

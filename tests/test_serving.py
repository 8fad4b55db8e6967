"""The model server over real HTTP on loopback: validation, CSV, metrics, auth, hot swap, canary,
prediction logging and drift."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

import httpx
import pytest
from conftest import VENV_BIN
from model_fixtures import train_run

import workbench as wb
from workbench.serving.predlog import predictions_dir, wait_for_lines

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]


@pytest.fixture()
def served(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    first, second = train_run(C=0.01), train_run(C=10.0)
    wb.promote(first)
    return {"first": first, "second": second, "rows": wine_frame[FEATURES]}


def test_predict_accepts_records_columns_split_and_csv_and_rejects_bad_input(served):
    rows = served["rows"].head(3)
    with wb.serve("wine@production", token="s3cret") as server, httpx.Client(base_url=server.url) as http:
        auth = {"Authorization": "Bearer s3cret"}
        ok = http.post("/predict", json={"records": rows.to_dict(orient="records")}, headers=auth)
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 3
        assert ok.headers["x-model-version"] == "1" and ok.json()["version"] == 1
        assert http.post("/predict", json=rows.to_dict(orient="records"), headers=auth).status_code == 200
        columns = {"columns": {c: rows[c].tolist() for c in FEATURES}}
        assert http.post("/predict", json=columns, headers=auth).json()["predictions"] == ok.json()["predictions"]
        split = {"dataframe_split": {"columns": FEATURES, "data": rows.to_numpy().tolist()}}
        assert http.post("/predict", json=split, headers=auth).status_code == 200
        csv = http.post("/predict", content=rows.to_csv(index=False), headers={**auth, "content-type": "text/csv"})
        assert csv.json()["predictions"] == ok.json()["predictions"]

        record = rows.iloc[0].to_dict()
        bad = [
            ({"records": [{k: v for k, v in record.items() if k != "proline"}]}, 422, "missing columns: proline"),
            ({"records": [{**record, "extra": 1}]}, 422, "unexpected columns: extra"),
            ({"records": [{**record, "alcohol": "strong"}]}, 422, "expects numbers"),
            ({"records": [{**record, "alcohol": True}]}, 422, "expects numbers"),
            ({"records": [{**record, "alcohol": None}]}, 422, "missing or non-finite"),
            ({"records": []}, 400, "no rows"),
            ({"rows": 1}, 400, "Unrecognized JSON body"),
            ({"records": [record] * 10_001}, 413, "limit"),
        ]
        for body, status, message in bad:
            answer = http.post("/predict", json=body, headers=auth)
            assert answer.status_code == status and message in answer.json()["error"], (body, answer.text[:200])
        for content, kind, status in [(b"{not json", "application/json", 400), (b"", "application/json", 400),
                                      (b"a,b\n1", "text/csv", 422), (b"x" * (9 << 20), "application/json", 413),
                                      (b"<xml/>", "application/xml", 415)]:  # fmt: skip
            answer = http.post("/predict", content=content, headers={**auth, "content-type": kind})
            assert answer.status_code == status, (content[:20], answer.text[:200])
            assert "error" in answer.json()

        assert http.post("/predict", json={"records": [record]}).status_code == 401
        assert http.get("/metadata").status_code == 401
        meta = http.get("/metadata", headers=auth).json()
        assert meta["version"] == 1 and meta["schema"][0]["name"] == "alcohol" and meta["training_data"] == ["wine@1"]
        assert http.get("/health").json()["status"] == "ok"
        metrics = http.get("/metrics").text
        assert 'workbench_requests_total{status="200",version="1"}' in metrics
        assert "workbench_request_latency_seconds_bucket" in metrics and 'kind="input"' in metrics


def test_hot_swap_under_load_fails_no_request(served):
    rows = served["rows"].head(1).to_dict(orient="records")
    failures, versions, stop = [], set(), threading.Event()

    def hammer(url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                try:
                    answer = http.post("/predict", json={"records": rows})
                    if answer.status_code != 200:
                        failures.append(answer.status_code)
                    else:
                        versions.add(answer.json()["version"])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    def serving(url: str, version: int) -> None:
        """Wait until the server answers with `version` (the alias watcher picked the move up)."""
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/metadata").json()["version"] != version:
            assert time.monotonic() < deadline, f"the server never swapped to version {version}"
            time.sleep(0.05)

    with wb.serve("wine@production") as server:
        clients = [threading.Thread(target=hammer, args=(server.url,)) for _ in range(4)]
        for client in clients:
            client.start()
        for flip in range(7):  # each move is made while the clients hammer, and awaited before the next
            time.sleep(0.3)
            if flip % 2 == 0:
                wb.promote(served["second"])
            else:
                wb.rollback("wine", to=1)
            serving(server.url, 2 if flip % 2 == 0 else 1)
        time.sleep(0.5)
        stop.set()
        for client in clients:
            client.join()
        meta = httpx.get(f"{server.url}/metadata").json()
    assert failures == []
    assert versions == {1, 2}
    assert meta["version"] == 2 and meta["swaps"] >= 7


def test_canary_gets_its_share_of_traffic(served):
    wb.promote(served["second"], alias="candidate")
    rows = served["rows"].head(1).to_dict(orient="records")
    with wb.serve("wine@production", canary="2=0.3") as server, httpx.Client(base_url=server.url) as http:
        answers = [http.post("/predict", json={"records": rows}).json() for _ in range(400)]
    canary = [a for a in answers if a["canary"]]
    assert 0.18 < len(canary) / len(answers) < 0.42
    assert {a["version"] for a in canary} == {2} and {a["version"] for a in answers if not a["canary"]} == {1}
    with pytest.raises(wb.ValidationError, match="Invalid --canary"):
        wb.serve("wine@production", canary="2=1.5")


def test_predictions_are_logged_and_shifted_inputs_are_flagged_as_drift(served, ws):
    rows = served["rows"]
    shifted = rows.assign(alcohol=rows["alcohol"] + 2.5, proline=rows["proline"] * 1.8)
    with wb.serve("wine@production") as server, httpx.Client(base_url=server.url) as http:
        assert http.post("/predict", json={"records": rows.to_dict(orient="records")}).status_code == 200
    wait_for_lines(predictions_dir(ws, "wine"), len(rows))
    calm = wb.drift_report("wine")
    assert calm.live_rows == len(rows) and calm.drifted == []

    with wb.serve("wine@production") as server, httpx.Client(base_url=server.url) as http:
        assert http.post("/predict", json={"records": shifted.to_dict(orient="records")}).status_code == 200
    wait_for_lines(predictions_dir(ws, "wine"), 2 * len(rows))
    report = wb.drift_report("wine", threshold=0.2)
    assert {"alcohol", "proline"} <= set(report.drifted) and "malic_acid" not in report.drifted
    assert report.figure().data[0].type == "bar"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_serve_and_monitor_cli(served, ws, cli, tmp_path):
    port = _free_port()
    env = dict(os.environ, WORKBENCH_HOME=str(ws.root))
    proc = subprocess.Popen([str(VENV_BIN / "workbench"), "serve", "wine@production", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        rows = served["rows"].to_dict(orient="records")
        assert httpx.post(f"http://127.0.0.1:{port}/predict", json={"records": rows}).status_code == 200
        servers = json.loads(cli("models", "list", "--json", check=True).stdout)
        assert servers[0]["aliases"] == {"production": 1}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    report = json.loads(cli("monitor", "wine", "--json", "--html", str(tmp_path / "drift.html"), check=True).stdout)
    assert report["live_rows"] == len(rows) and report["drifted"] == []
    assert (tmp_path / "drift.html").read_text().count("plotly") > 0
    actions = [e.action for e in wb.audit_log()]
    assert "serving.started" in actions and "serving.stopped" in actions


def test_mlflow_scoring_protocol_payloads_give_the_same_predictions(served):
    """An MLflow client sends dataframe_split, dataframe_records, instances or inputs: all work unchanged."""
    rows = served["rows"].head(4)
    records = rows.to_dict(orient="records")
    payloads = {
        "dataframe_split": {"dataframe_split": {"columns": FEATURES, "data": rows.to_numpy().tolist()}},
        "dataframe_records": {"dataframe_records": records},
        "instances (objects)": {"instances": records},
        "instances (rows)": {"instances": rows.to_numpy().tolist()},
        "inputs (columns)": {"inputs": {c: rows[c].tolist() for c in FEATURES}},
        "inputs (objects)": {"inputs": records},
    }
    with wb.serve("wine@production", log_predictions=False) as server, httpx.Client(base_url=server.url) as http:
        expected = http.post("/predict", json={"records": records}).json()["predictions"]
        for label, body in payloads.items():
            answer = http.post("/predict", json=body)
            assert answer.status_code == 200 and answer.json()["predictions"] == expected, (label, answer.text[:200])
        short = http.post("/predict", json={"instances": [[1.0, 2.0]]})
        assert short.status_code == 400 and "as long as 'columns'" in short.json()["error"]
        unknown = http.post("/predict", json={"dataframe_records": [{**records[0], "extra": 1}]})
        assert unknown.status_code == 422 and "extra" in unknown.json()["error"]
        too_many = http.post("/predict", json={"instances": records[:1] * 10_001})
        assert too_many.status_code == 413


def test_a_server_whose_start_cannot_be_audited_does_not_serve(served, monkeypatch, caplog):
    """The audit entry used to be dropped silently: a server could run with no record of it."""
    import workbench.serving.server as server_module
    from workbench import audit
    from workbench.errors import StoreBusyError

    real_record = audit.record

    def busy(con, action, *args, **kwargs):
        if action == "serving.started":
            raise StoreBusyError("The catalog stayed locked by another process for 1 s.")
        return real_record(con, action, *args, **kwargs)

    monkeypatch.setattr(audit, "record", busy)
    with pytest.raises(wb.WorkbenchError, match="Not serving wine@production: its audit entry could not be written"):
        wb.serve("wine@production", log_predictions=False)
    assert server_module.running_servers() == []

    def stop_fails(con, action, *args, **kwargs):
        if action == "serving.stopped":
            raise StoreBusyError("The catalog stayed locked by another process for 1 s.")
        return real_record(con, action, *args, **kwargs)

    monkeypatch.setattr(audit, "record", stop_fails)
    with wb.serve("wine@production", log_predictions=False):
        pass
    assert "serving.stopped of wine@production could not be written" in caplog.text  # said, not swallowed


def test_a_port_in_use_is_a_clear_error_and_nothing_is_audited(served, cli):
    """It was reported as a validation error ('Is the port in use?') after auditing a start."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = len(wb.audit_log(action="serving.started"))
        proc = cli("serve", "wine@production", "--port", str(port), "--no-log", timeout=60)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2 and f"Cannot listen on 127.0.0.1:{port}" in output, output
        assert "Traceback" not in output and "--port" in output
        with pytest.raises(wb.WorkbenchError, match=f"Cannot listen on 127.0.0.1:{port}"):
            wb.serve("wine@production", port=port, log_predictions=False)
        assert len(wb.audit_log(action="serving.started")) == before

"""The model server scraped by a real Prometheus (issue 22): Debian's `prometheus` scrapes a real
`workbench serve` on loopback every second, with the shipped alert rules loaded, and the series it
stores match the traffic sent; the rules and the Grafana dashboard's queries are checked by
`promtool` and refer only to metrics /metrics exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import VENV_BIN
from model_fixtures import module_workspace, train_run
from prometheus_client.parser import text_string_to_metric_families

import workbench as wb
from workbench.errors import ValidationError
from workbench.serving.predlog import predictions_dir, wait_for_lines
from workbench.serving.prometheus.files import ALERTS, DASHBOARD, SCRAPE_CONFIG, export_files, packaged

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
NOT_INSTALLED = "Debian's prometheus is not installed (apt-get install prometheus; .ci/run installs it)"
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None, reason=NOT_INSTALLED)
#: Grafana's own variables in the dashboard's queries, as a Prometheus-only query must read them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": ".*", "$instance": ".*"}
#: Rows per valid request (every row of the wine data once: only the shifted column drifts), and
#: how many invalid (422) requests are sent.
REQUEST_ROWS = (1, 3, 5, 8, 13, 20, 30, 40, 58)
INVALID = 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """`check()`'s first truthy value (errors count as not yet), else a failure naming `what`."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"Timed out waiting for {what} (last error: {last!r})")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


class Stack:
    """A model server, the Prometheus scraping it, and what was sent to the server."""

    def __init__(self, ws: Any, server: str, prometheus: str, folder: Path) -> None:
        self.ws, self.server, self.prometheus, self.folder = ws, server, prometheus, folder
        self.sent: dict[str, Any] = {}

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def values(self, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {tuple(r["metric"].get(name, "") for name in labels): float(r["value"][1]) for r in self.query(expr)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, wine_frame) -> Iterator[Stack]:
    """A workspace with wine@production served by `workbench serve` (gauges refreshed every second),
    scraped every second by Prometheus with the exported rules, config and dashboard; stopped after."""
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.skip(NOT_INSTALLED)

    root = tmp_path_factory.mktemp("prometheus")
    with module_workspace(root) as ws:
        wb.snapshot("wine", wine_frame)
        wb.promote(train_run())
        server_port, prometheus_port = _free_port(), _free_port()
        folder = root / "ops"
        subprocess.run([str(VENV_BIN / "workbench"), "export", "prometheus", str(folder), "--target",
                        f"127.0.0.1:{server_port}"], check=True, capture_output=True)  # fmt: skip
        config = folder / SCRAPE_CONFIG
        config.write_text(config.read_text().replace("15s", "1s"))  # scrape and evaluate every second
        env = dict(os.environ, WORKBENCH_METRICS_REFRESH="1")
        server = _start([str(VENV_BIN / "workbench"), "serve", "wine@production", "--port", str(server_port)],
                        root / "serve.log", env)  # fmt: skip
        prometheus = _start([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={root / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prometheus_port}"], root / "prometheus.log")  # fmt: skip
        try:
            found = Stack(ws, f"http://127.0.0.1:{server_port}", f"http://127.0.0.1:{prometheus_port}", folder)
            _wait(lambda: httpx.get(f"{found.server}/health").status_code == 200, "the model server", 60)
            _wait(lambda: httpx.get(f"{found.prometheus}/-/ready").status_code == 200, "Prometheus")
            yield found
        finally:
            _stop(prometheus)
            _stop(server)


@pytest.fixture(scope="module")
def traffic(stack: Stack, wine_frame) -> Stack:
    """Valid requests (alcohol shifted far beyond the training data: input drift), invalid ones
    (a missing column: 422), and the true class of every predicted row sent to /feedback."""
    rows, targets = wine_frame[FEATURES].copy(), wine_frame["target"]
    assert sum(REQUEST_ROWS) == len(rows)
    rows["alcohol"] += 5.0
    predicted, outcomes, start = [], [], 0
    with httpx.Client(base_url=stack.server, timeout=30) as http:
        for count in REQUEST_ROWS:
            batch = rows.iloc[start : start + count]
            answer = http.post("/predict", json={"records": batch.to_dict(orient="records")})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            predicted += body["predictions"]
            outcomes += [{"request_id": body["request_id"], "row": i, "outcome": int(targets.iloc[start + i])}
                         for i in range(count)]  # fmt: skip
            start += count
        for _ in range(INVALID):
            bad = http.post("/predict", json={"records": [{"alcohol": 13.0}]})
            assert bad.status_code == 422, bad.text
        assert wait_for_lines(predictions_dir(stack.ws, "wine"), start) == start
        assert http.post("/feedback", json={"outcomes": outcomes}).json()["recorded"] == start
    truth = [o["outcome"] for o in outcomes]
    stack.sent = {"rows": start, "accuracy": sum(p == t for p, t in zip(predicted, truth, strict=True)) / start}
    return stack


@needs_prometheus
@pytest.mark.slow
def test_prometheus_reads_back_the_requests_sent(traffic: Stack):
    valid, rows = len(REQUEST_ROWS), traffic.sent["rows"]
    expected = {("1", "200"): valid, ("1", "422"): INVALID}
    counted = _wait(lambda: (found := traffic.values("sum by (version, status) (workbench_requests_total)",
                                                     "version", "status")) == expected and found,
                    "Prometheus to scrape the traffic")  # fmt: skip
    assert counted == expected
    # the latency histogram observes every answered request, in buckets that add up
    assert traffic.values("workbench_request_latency_seconds_count", "version") == {("1",): valid}
    assert traffic.values('workbench_request_latency_seconds_bucket{le="+Inf"}', "version") == {("1",): valid}
    assert 0 < traffic.values("workbench_request_latency_seconds_sum")[()] < 30
    p99 = traffic.values("histogram_quantile(0.99, sum by (le) (workbench_request_latency_seconds_bucket))")[()]
    assert 0 < p99 <= 2.5
    assert traffic.values("workbench_predicted_rows_total", "version") == {("1",): rows}
    assert traffic.values("workbench_errors_total", "kind") == {("input",): INVALID}
    assert traffic.values("workbench_outcomes_total") == {(): rows}
    assert traffic.values('up{job="workbench-model"}') == {(): 1.0}


@needs_prometheus
@pytest.mark.slow
def test_drift_and_live_quality_gauges_reach_prometheus(traffic: Stack):
    rows = traffic.sent["rows"]
    _wait(lambda: traffic.values("workbench_live_outcomes", "version", "shadow") == {("1", "false"): rows},
          "the live-quality gauges after the outcomes")  # fmt: skip
    quality = traffic.values("workbench_live_quality", "version", "shadow", "metric")
    assert set(quality) == {("1", "false", metric) for metric in ("accuracy", "f1", "log_loss")}
    assert quality[("1", "false", "accuracy")] == pytest.approx(traffic.sent["accuracy"], abs=1e-12)
    drift = traffic.values("workbench_drift_psi", "version", "column")
    report = wb.drift_report("wine@1", ws=traffic.ws)  # the same numbers `workbench monitor` shows
    assert {column for (_, column) in drift} == {*FEATURES, "prediction"}
    for column, psi in zip(report.table["column"], report.table["psi"], strict=True):
        assert drift[("1", column)] == pytest.approx(psi, abs=1e-12), column
    assert drift[("1", "alcohol")] > 0.2 and max(drift[("1", column)] for column in FEATURES[1:]) < 0.01
    assert time.time() - traffic.values("workbench_monitor_refreshed_timestamp_seconds")[()] < 30


@needs_prometheus
@pytest.mark.slow
def test_the_loaded_alert_rules_are_healthy_and_drift_makes_its_alert_pending(traffic: Stack):
    def rules() -> list[dict[str, Any]]:
        groups = httpx.get(f"{traffic.prometheus}/api/v1/rules").json()["data"]["groups"]
        found = [rule for group in groups for rule in group["rules"]]
        return found if found and all(rule["health"] == "ok" for rule in found) else []

    names = sorted(rule["name"] for rule in _wait(rules, "the rules' first evaluation"))
    assert names == ["WorkbenchInputDrift", "WorkbenchLiveQualityDrop", "WorkbenchModelErrorRate",
                     "WorkbenchModelLatencyP99"]  # fmt: skip

    def drift_alerts() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{traffic.prometheus}/api/v1/alerts").json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "WorkbenchInputDrift"]

    alerts = _wait(drift_alerts, "the drift alert")
    assert {a["state"] for a in alerts} == {"pending"}  # `for: 30m`: pending, not firing yet
    assert "alcohol" in {a["labels"]["column"] for a in alerts}
    assert "WorkbenchModelErrorRate" not in {a["labels"]["alertname"]
                                             for a in httpx.get(f"{traffic.prometheus}/api/v1/alerts")
                                             .json()["data"]["alerts"]}  # fmt: skip


def _metric_names(promql: str) -> set[str]:
    return set(re.findall(r"\bworkbench_[a-z_]+\b", promql))


def _exposed(stack: Stack) -> set[str]:
    """Every sample name /metrics exports now (counters' _total, histograms' _bucket/_count/_sum...)."""
    text = httpx.get(f"{stack.server}/metrics").text
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@needs_prometheus
@pytest.mark.slow
def test_dashboard_queries_parse_and_use_only_exported_metrics(traffic: Stack):
    _wait(lambda: "workbench_drift_psi" in _exposed(traffic), "the gauges on /metrics")
    exposed = _exposed(traffic)
    dashboard = json.loads((traffic.folder / DASHBOARD).read_text())
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    exprs = []
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        exprs += [target["expr"] for target in panel["targets"]]
    assert len(exprs) >= 10
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    assert all(word in titles for word in ("version and status", "p99", "error rate", "drift", "live quality"))
    used = set()
    for expr in exprs:
        query = expr
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        run = subprocess.run([PROMTOOL, "query", "instant", traffic.prometheus, query], capture_output=True,
                             text=True, timeout=20)  # fmt: skip
        assert run.returncode == 0, f"{expr}\n{run.stderr}"
        used |= _metric_names(expr)
    assert used <= exposed, used - exposed
    assert {"workbench_drift_psi", "workbench_live_quality", "workbench_request_latency_seconds_bucket"} <= used
    assert _metric_names(packaged(ALERTS)) <= exposed


@needs_prometheus
def test_promtool_checks_the_rules_and_the_error_rate_alert_fires(tmp_path: Path):
    export_files(tmp_path)
    checked = subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / ALERTS)], capture_output=True, text=True)
    assert checked.returncode == 0 and "4 rules found" in checked.stdout, checked.stdout + checked.stderr
    config = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / SCRAPE_CONFIG)], capture_output=True,
                            text=True)  # fmt: skip
    assert config.returncode == 0, config.stdout + config.stderr
    rules = {r["alert"]: r for group in yaml.safe_load(packaged(ALERTS))["groups"] for r in group["rules"]}
    description = rules["WorkbenchModelErrorRate"]["annotations"]["description"]
    # 150 requests a minute, 10 of them failing (6.7% > 5%) from the start: firing after `for: 5m`
    series = 'workbench_requests_total{{job="m", instance="a", version="1", status="{status}"}}'
    (tmp_path / "alerts_test.yml").write_text(f"""
rule_files: [{ALERTS}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: '{series.format(status="200")}'
        values: '0+90x20'
      - series: '{series.format(status="500")}'
        values: '0+10x20'
      - series: '{series.format(status="422")}'
        values: '0+50x20'
    alert_rule_test:
      - eval_time: 3m
        alertname: WorkbenchModelErrorRate
        exp_alerts: []
      - eval_time: 12m
        alertname: WorkbenchModelErrorRate
        exp_alerts:
          - exp_labels: {{severity: page, job: m, instance: a}}
            exp_annotations:
              summary: "Model server a fails 6.667% of its requests"
              description: "{description}"
      - eval_time: 12m
        alertname: WorkbenchModelLatencyP99
        exp_alerts: []
""")
    tested = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True,
                            text=True)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_export_keeps_existing_files_and_refuses_bad_targets(tmp_path: Path):
    written = export_files(tmp_path / "ops", ["10.0.0.5:8000", "model-b:9000"])
    assert sorted(p.name for p in written) == sorted([ALERTS, DASHBOARD, SCRAPE_CONFIG])
    assert 'targets: ["10.0.0.5:8000", "model-b:9000"]' in (tmp_path / "ops" / SCRAPE_CONFIG).read_text()
    (tmp_path / "ops" / ALERTS).write_text("tuned")
    with pytest.raises(ValidationError, match="already exist"):
        export_files(tmp_path / "ops")
    assert (tmp_path / "ops" / ALERTS).read_text() == "tuned"
    export_files(tmp_path / "ops", force=True)
    assert (tmp_path / "ops" / ALERTS).read_text() == packaged(ALERTS)
    with pytest.raises(ValidationError, match="Invalid scrape target"):
        export_files(tmp_path / "other", ["no-port"])
    assert not (tmp_path / "other").exists()  # nothing written when refused
    (tmp_path / "file").write_text("")
    with pytest.raises(ValidationError, match="is a file"):
        export_files(tmp_path / "file")


def test_gauges_are_absent_until_something_was_logged(ws, wine_frame, monkeypatch):
    from workbench.serving.prometheus.gauges import REFRESHED, MonitorGauges

    wb.snapshot("wine", wine_frame)
    wb.promote(train_run())
    gauges = MonitorGauges(ws, "wine", lambda: [1], refresh=3600)
    assert [family.name for family in gauges.refresh_now()] == [REFRESHED]  # nothing logged: no drift, no quality
    monkeypatch.setenv("WORKBENCH_METRICS_LOOKBACK", "an hour")
    with pytest.raises(ValidationError, match="WORKBENCH_METRICS_LOOKBACK"):
        MonitorGauges(ws, "wine", lambda: [1])
    monkeypatch.setenv("WORKBENCH_METRICS_LOOKBACK", "15m")
    monkeypatch.setenv("WORKBENCH_METRICS_REFRESH", "-1")
    with pytest.raises(ValidationError, match="WORKBENCH_METRICS_REFRESH"):
        MonitorGauges(ws, "wine", lambda: [1])

"""Live quality per model version and window (issue 19): hand-written prediction and outcome logs
in the contract's formats, for real promoted models in a real workspace, checked against
scikit-learn on the same rows; and `workbench monitor NAME --window --since` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import VENV_BIN
from model_fixtures import module_workspace, train_run
from sklearn.metrics import accuracy_score, f1_score, log_loss, mean_absolute_error, root_mean_squared_error

import workbench as wb
from workbench.errors import ValidationError
from workbench.quality.live import LiveQuality, live_quality
from workbench.workspace import Workspace

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]
REGRESSION_FEATURES = ["malic_acid", "color_intensity", "proline"]
#: The first window's start: on the hour, a few hours back, so "7d" covers every line.
T0 = pd.Timestamp.now(tz="UTC").floor("1h") - pd.Timedelta(hours=5)


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)


def _log_request(ws: Workspace, model: str, estimator: Any, version: int, request_id: str, at: pd.Timestamp,
                 rows: pd.DataFrame, latency_ms: float, shadow: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Prediction lines of one request as the model server writes them (contract item 1)."""
    predictions = estimator.predict(rows[FEATURES if model == "wine" else REGRESSION_FEATURES])
    probas = estimator.predict_proba(rows[FEATURES]) if hasattr(estimator, "predict_proba") else None
    lines = []
    for i, (_, row) in enumerate(rows.iterrows()):
        line = {"at": at.isoformat(), "request_id": request_id, "row": i, "version": version,
                "latency_ms": latency_ms, "input": {c: float(row[c]) for c in FEATURES},
                "prediction": predictions[i].item()}  # fmt: skip
        if probas is not None:
            line["proba"] = {str(c): float(p) for c, p in zip(estimator.classes_, probas[i], strict=True)}
        if shadow:
            line["shadow"] = True
        lines.append(line)
    _jsonl(ws.root / "predictions" / model / f"{at:%Y%m%d}-{4242 if not shadow else 4243}.jsonl", lines)
    return lines


def _outcomes(ws: Workspace, model: str, items: list[dict[str, Any]]) -> None:
    """Outcome lines in the contract's format (item 2), the first of a (request_id, row) winning."""
    at = pd.Timestamp.now(tz="UTC").isoformat()
    _jsonl(ws.root / "outcomes" / model / f"{pd.Timestamp.now(tz='UTC'):%Y%m%d}-4242.jsonl",
           [{"at": at, "row": 0, "source": "bulk", **item} for item in items])  # fmt: skip


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, wine_frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Model "wine" (classifier, versions 1 and 2) and "acidity" (regressor): requests answered by
    v1 in two windows, by v2 (the canary) in the second, v2 shadowing v1's first-window requests;
    outcomes for most rows (some pending, a duplicate, an unknown id)."""
    from sklearn.linear_model import Ridge

    root = tmp_path_factory.mktemp("live")
    with module_workspace(root) as ws:
        wb.snapshot("wine", wine_frame)
        wb.promote(train_run(C=0.01))
        wb.promote(train_run(C=10.0))
        data = wb.load_snapshot("wine")
        wb.log_model(Ridge().fit(data[REGRESSION_FEATURES], data["alcohol"]), "acidity",
                     sample=data[REGRESSION_FEATURES].head())  # fmt: skip
        regression_run = wb.active_run_id()
        wb.end_run()
        wb.promote(regression_run, "acidity")
        v1, v2, reg = wb.load_model("wine@1")[0], wb.load_model("wine@2")[0], wb.load_model("acidity@1")[0]

        rng = np.random.default_rng(7)
        lines: list[dict[str, Any]] = []
        regression_lines: list[dict[str, Any]] = []
        truth: dict[tuple[str, int], int] = {}
        for n in range(40):
            rows = wine_frame.sample(int(rng.integers(1, 4)), random_state=n)
            second = n >= 20
            at = T0 + pd.Timedelta(hours=int(second), minutes=int(rng.integers(0, 60)))
            version, estimator = (2, v2) if second and n % 2 else (1, v1)
            request = f"req-{n}"
            latency = float(rng.uniform(1, 30))
            lines += _log_request(ws, "wine", estimator, version, request, at, rows, latency)
            truth.update({(request, i): int(y) for i, y in enumerate(rows["target"])})
            if not second:
                lines += _log_request(ws, "wine", v2, 2, request, at, rows, latency * 2, shadow=True)
            regression_lines += _log_request(ws, "acidity", reg, 1, request, at, rows, latency)
        pending = {("req-3", 0), ("req-25", 0)}
        items = [{"request_id": rid, "row": row, "outcome": y} for (rid, row), y in truth.items()
                 if (rid, row) not in pending]  # fmt: skip
        items += [{"request_id": "req-0", "row": 0, "outcome": 99},  # a later duplicate: the first wins
                  {"request_id": "nobody", "row": 0, "outcome": 1}]  # fmt: skip
        _outcomes(ws, "wine", items)
        alcohol = {(r["request_id"], r["row"]): r["input"]["alcohol"] for r in regression_lines}
        _outcomes(ws, "acidity", [{"request_id": k[0], "row": k[1], "outcome": v} for k, v in alcohol.items()])
        yield {"ws": ws, "root": root, "lines": pd.DataFrame(lines), "truth": truth,
               "regression": pd.DataFrame(regression_lines), "alcohol": alcohol}  # fmt: skip


def _expected(lines: pd.DataFrame, window: str) -> pd.DataFrame:
    frame = lines.assign(start=pd.to_datetime(lines["at"], utc=True).dt.floor(window))
    frame["shadow"] = frame.get("shadow", pd.Series(False, index=frame.index)).fillna(False).astype(bool)
    return frame


def test_per_version_classification_metrics_equal_sklearn_on_the_same_rows(logged):
    report = live_quality("wine", window="1h", since="7d", ws=logged["ws"])
    assert report.task == "classification" and isinstance(report, LiveQuality)
    table = report.table
    assert list(table.columns) == ["version", "shadow", "start", "requests", "rows", "errors", "error_rate",
                                   "latency_p50", "latency_p95", "latency_p99", "outcomes", "accuracy", "f1",
                                   "log_loss", "psi"]  # fmt: skip
    assert isinstance(table["start"].dtype, pd.DatetimeTZDtype) and str(table["start"].dt.tz) == "UTC"
    assert table["version"].dtype == "int64" and table["shadow"].dtype == bool
    expected = _expected(logged["lines"], "1h")
    truth = logged["truth"]
    assert len(table) == expected.groupby(["version", "shadow", "start"]).ngroups == 4
    for row in table.itertuples():
        rows = expected[(expected["version"] == row.version) & (expected["shadow"] == row.shadow)
                        & (expected["start"] == row.start)]  # fmt: skip
        known = rows[[(r, i) in truth and (r, i) not in {("req-3", 0), ("req-25", 0)}
                      for r, i in zip(rows["request_id"], rows["row"], strict=True)]]  # fmt: skip
        y_true = [truth[(r, i)] for r, i in zip(known["request_id"], known["row"], strict=True)]
        assert (row.requests, row.rows, row.outcomes) == (rows["request_id"].nunique(), len(rows), len(known))
        assert row.accuracy == pytest.approx(accuracy_score(y_true, known["prediction"]))
        assert row.f1 == pytest.approx(f1_score(y_true, known["prediction"], average="macro"))
        proba = np.array([[p[str(c)] for c in range(3)] for p in known["proba"]])
        assert row.log_loss == pytest.approx(log_loss(y_true, proba, labels=[0, 1, 2]), rel=1e-6)
        latencies = rows.groupby("request_id")["latency_ms"].first()
        assert row.latency_p95 == pytest.approx(np.percentile(latencies, 95))
        assert np.isnan(row.errors)  # no failures folder (a server before failure logging): unknown, not 0
        assert 0 <= row.psi < 10
    assert report.counts["duplicates"] >= 1 and report.counts["unknown"] >= 1
    assert report.counts["pending"] >= 2


def test_shadow_lines_get_their_own_rows_and_are_not_traffic(logged):
    table = live_quality("wine", ws=logged["ws"]).table
    first = table[table["start"] == T0]
    served, shadow = first[~first["shadow"]], first[first["shadow"]]
    assert served["version"].tolist() == [1] and shadow["version"].tolist() == [2]
    assert served["requests"].item() == shadow["requests"].item() == 20  # the shadow answered the same requests
    lines = logged["lines"]
    first_hour = pd.to_datetime(lines["at"]) < T0 + pd.Timedelta("1h")
    assert served["rows"].item() == ((lines["version"] == 1) & first_hour & lines["shadow"].isna()).sum()
    figures = live_quality("wine", ws=logged["ws"]).figures()
    assert list(figures) == ["traffic", "latency_p95", "accuracy", "f1", "log_loss", "psi"]
    traffic = figures["traffic"]
    assert traffic.layout.barmode == "stack" and traffic.layout.template.layout.paper_bgcolor == "white"
    assert sum(sum(bar.y) for bar in traffic.data) == table.loc[~table["shadow"], "requests"].sum()
    assert {t.name for t in figures["accuracy"].data} == {"v1", "v2", "v2 (shadow)"}


def test_windows_split_at_their_boundaries(logged):
    ws = logged["ws"]
    hourly, quarter, daily = (live_quality("wine", window=w, ws=ws).table for w in ("1h", "15m", "1d"))
    for table in (hourly, quarter, daily):
        assert table.groupby(["version", "shadow"])["rows"].sum().to_dict() == \
            hourly.groupby(["version", "shadow"])["rows"].sum().to_dict()  # fmt: skip
    assert set(hourly["start"]) == {T0, T0 + pd.Timedelta("1h")}
    assert len(quarter) > len(hourly) and (quarter["start"].dt.minute % 15 == 0).all()
    assert (daily["start"] == daily["start"].dt.floor("1D")).all()
    recent = live_quality("wine", since=(T0 + pd.Timedelta("1h")).isoformat(), ws=ws).table
    assert set(recent["start"]) == {T0 + pd.Timedelta("1h")} and not recent["shadow"].any()
    assert live_quality("wine", since="1m", ws=ws).table.empty  # nothing in the last minute


def test_regression_metrics_and_json_round_trip(logged):
    report = live_quality("acidity", ws=logged["ws"])
    assert report.task == "regression" and report.metrics == ("mae", "rmse")
    assert "accuracy" not in report.table.columns and report.table["psi"].notna().all()
    frame = _expected(logged["regression"], "1h")
    for row in report.table.itertuples():
        rows = frame[frame["start"] == row.start]
        y_true = [logged["alcohol"][(r, i)] for r, i in zip(rows["request_id"], rows["row"], strict=True)]
        assert row.mae == pytest.approx(mean_absolute_error(y_true, rows["prediction"]))
        assert row.rmse == pytest.approx(root_mean_squared_error(y_true, rows["prediction"]))
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # JSON-safe: NaN became null
    assert data["task"] == "regression" and data["rows"][0]["errors"] is None and data["errors_logged"] is False
    again = LiveQuality.from_dict(data)
    pd.testing.assert_frame_equal(again.table, report.table)
    assert "Live quality: acidity" in report.to_html()


def test_bad_window_since_and_model_are_clean_errors(logged):
    ws = logged["ws"]
    for window in ("1 hour", "0h", "h", "1y", "-1h"):
        with pytest.raises(ValidationError, match="Invalid --window"):
            live_quality("wine", window=window, ws=ws)
    for since in ("last week", "7 days", "2026-13-45"):
        with pytest.raises(ValidationError, match="Invalid --since"):
            live_quality("wine", since=since, ws=ws)
    with pytest.raises(wb.WorkbenchError, match="No model named 'nope'"):
        live_quality("nope", ws=ws)


def test_labels_logged_as_other_types_are_the_same_class():
    """Outcomes from CSV or JSON rarely keep the model's label type: 1, 1.0 and "1" are one class."""
    from workbench.quality.metrics import classification_metrics, is_classification, regression_metrics

    scores = classification_metrics(pd.Series(["1", 2.0, True, "b"]), pd.Series([1, 2, True, "a"]),
                                    pd.Series([{"1": 0.5, "2": 0.5}, None, None, None]))  # fmt: skip
    assert scores["accuracy"] == 0.75 and scores["log_loss"] == pytest.approx(np.log(2))
    unseen = classification_metrics(pd.Series([3]), pd.Series([1]), pd.Series([{"1": 0.9, "2": 0.1}]))
    assert unseen["accuracy"] == 0 and np.isnan(unseen["log_loss"])  # no probability for the true class
    assert is_classification(None, pd.Series(["a", "b"])) and not is_classification(None, pd.Series([1.5, 2.0]))
    assert is_classification({"classes": [0, 1]}, pd.Series([0, 1]))
    numbers = regression_metrics(pd.Series(["1.5", "x", 3]), pd.Series([1.0, 2.0, 3.0]))  # "x" is left out
    assert numbers == {"mae": 0.25, "rmse": pytest.approx(np.sqrt(0.125))}


def _cli(logged: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WORKBENCH_HOME=str(logged["ws"].root), COLUMNS="200", NO_COLOR="1")
    return subprocess.run([str(VENV_BIN / "workbench"), *args], capture_output=True, text=True, env=env,
                          cwd=logged["root"], timeout=120)  # fmt: skip


def test_monitor_cli_prints_live_quality_as_table_json_and_html(logged, tmp_path):
    answer = _cli(logged, "monitor", "wine", "--window", "1h", "--since", "7d", "--json", "--html",
                  str(tmp_path / "report.html"))  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    data = json.loads(answer.stdout)
    assert data["drifted"] is not None and data["model"] == "wine"  # the drift report, as before
    live = data["live"]
    assert live["window"] == "1h" and live["task"] == "classification" and len(live["rows"]) == 4
    expected = live_quality("wine", window="1h", since="7d", ws=logged["ws"]).table
    assert [r["accuracy"] for r in live["rows"]] == pytest.approx(expected["accuracy"].tolist())
    html = (tmp_path / "report.html").read_text()
    assert "Drift report: wine" in html and "Live quality: wine per 1h" in html and "log loss" in html

    table = _cli(logged, "monitor", "wine@2", "--window", "15m")  # a pinned version: only its rows
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("version\t"))
    assert lines[header].split("\t")[:4] == ["version", "start", "requests", "rows"]
    assert "accuracy" in lines[header] and "log_loss" in lines[header]
    shown = [line.split("\t") for line in lines[header + 1 :]]
    assert {row[0] for row in shown} == {"2", "2 (shadow)"} and {row[4] for row in shown} == {"n/a"}
    assert "Outcomes of wine" in table.stderr and "errors n/a" in table.stderr

    for args, message in [(("--window", "1 hour"), "Invalid --window '1 hour'"),
                          (("--since", "soon"), "Invalid --since 'soon'")]:  # fmt: skip
        bad = _cli(logged, "monitor", "wine", *args)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr

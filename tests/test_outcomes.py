"""Outcomes (issue 19): recorded append-only, joined to the prediction log on (request_id, row).

Late (the outcome before its prediction line), duplicate (first wins, never counted twice) and
unknown ids are counted and never lost; invalid batches are refused whole; bulk tables come from a
DataFrame, a CSV/Parquet file or a snapshot, through the API and `workbench monitor outcomes`.
The prediction lines are written here in the log's format (no model server needed).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli_in_process
from model_fixtures import train_run

import workbench as wb
from workbench.errors import DataSourceError, NotFoundError, ValidationError
from workbench.permissions import make_dir
from workbench.quality.outcomes import MAX_ITEMS, joined, outcomes_dir, outcomes_frame, record_outcomes
from workbench.serving.predlog import predictions_dir

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]


def log_predictions(ws, model: str, lines: list[dict], name: str = "20260101-1.jsonl") -> None:
    """Append prediction log lines as the model server writes them (`at`, `latency_ms`, `input` filled in)."""
    folder = make_dir(predictions_dir(ws, model))
    with open(folder / name, "a") as fh:
        for line in lines:
            record = {"at": "2026-01-01T10:00:00+00:00", "version": 1, "latency_ms": 2.0, "input": {"x": 1.0}} | line
            fh.write(json.dumps(record) + "\n")


def outcome_files(ws, model: str) -> list[Path]:
    folder = outcomes_dir(ws, model)
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


@pytest.fixture()
def model(ws, wine_frame) -> str:
    """A registered model `wine` (version 1) trained on snapshot `wine`."""
    wb.snapshot("wine", wine_frame)
    wb.promote(train_run())
    return "wine"


def test_late_duplicate_and_unknown_outcomes_are_counted_once_and_never_lost(ws):
    # Late: the outcome of r1 arrives before its prediction line is logged.
    assert record_outcomes(ws, "m", [{"request_id": "r1", "outcome": 1}]) == {"recorded": 1, "duplicates": 0,
                                                                              "unknown": 1}  # fmt: skip
    frame, counts = joined(ws, "m")
    assert frame.empty and counts == {"outcomes": 1, "matched": 0, "duplicates": 0, "unknown": 1, "pending": 0}

    log_predictions(ws, "m", [
        {"request_id": "r1", "prediction": 1},  # an older log line: no "row" (counts as row 0)
        *({"request_id": "r2", "row": i, "prediction": i % 2, "proba": {"0": 0.4, "1": 0.6}} for i in range(3)),
        {"request_id": "r2", "row": 1, "version": 2, "shadow": True, "prediction": 0},  # a shadow version's
        {"at": "2026-01-02T10:00:00+00:00", "request_id": "r3", "row": 0, "prediction": 0},
    ])  # fmt: skip
    not_log_lines = [{"at": "yesterday", "request_id": "r5", "prediction": 1}, {"request_id": "r6", "version": None}]
    log_predictions(ws, "m", not_log_lines)  # skipped when read
    with open(predictions_dir(ws, "m") / "20260101-1.jsonl", "a") as fh:
        fh.write('{"at": "2026-01-02T11:00:00+00:00", "request_id": "r4", "ver')  # a line being written
    frame, counts = joined(ws, "m")
    assert counts == {"outcomes": 1, "matched": 1, "duplicates": 0, "unknown": 0, "pending": 4}  # r1 matched now

    # Duplicates (r1 again, and twice in one batch), a known row, an unknown id.
    batch = [{"request_id": "r1", "row": 0, "outcome": 0}, {"request_id": "r2", "row": 1, "outcome": 1},
             {"request_id": "r2", "row": 2, "outcome": 0}, {"request_id": "r2", "row": 2, "outcome": 1},
             {"request_id": "nobody-asked", "outcome": "x"}]  # fmt: skip
    assert record_outcomes(ws, "m", batch, source="feedback") == {"recorded": 5, "duplicates": 2, "unknown": 1}
    frame, counts = joined(ws, "m")
    assert counts == {"outcomes": 4, "matched": 3, "duplicates": 2, "unknown": 1, "pending": 2}
    assert list(frame.columns) == ["at", "request_id", "row", "version", "shadow", "latency_ms", "prediction", "proba",
                                   "outcome", "outcome_at"]  # fmt: skip
    by_key = {(r.request_id, r.row, r.shadow): r for r in frame.itertuples()}
    assert by_key["r1", 0, False].outcome == 1  # the first outcome wins
    assert by_key["r2", 2, False].outcome == 0
    assert by_key["r2", 1, True].outcome == 1 and by_key["r2", 1, True].version == 2  # the shadow line joins too
    assert by_key["r2", 0, False].proba == {"0": 0.4, "1": 0.6} and pd.isna(by_key["r2", 0, False].outcome)
    assert frame["at"].dt.tz is not None and frame["outcome_at"].notna().sum() == 4

    first = outcomes_frame(ws, "m")
    assert list(first.columns) == ["request_id", "row", "outcome", "at"] and len(first) == 4
    found = {(r.request_id, r.row): r.outcome for r in first.itertuples()}
    assert found == {("r1", 0): 1, ("r2", 1): 1, ("r2", 2): 0, ("nobody-asked", 0): "x"}
    assert sum(p.read_text().count("\n") for p in outcome_files(ws, "m")) == 6  # every line kept on disk

    late, counts = joined(ws, "m", since="2026-01-02")
    assert late.request_id.tolist() == ["r3"] and counts["pending"] == 1 and counts["matched"] == 0
    assert counts["unknown"] == 1  # unknown means: no prediction at any time, not only in the window


def test_outcome_files_are_private_and_one_per_process_and_day(ws):
    record_outcomes(ws, "m", [{"request_id": "a", "outcome": True}])
    record_outcomes(ws, "m", [{"request_id": "b", "outcome": 2.5}])
    [path] = outcome_files(ws, "m")
    assert path.name.endswith(f"-{os.getpid()}.jsonl")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    found = [(x["request_id"], x["row"], x["outcome"], x["source"]) for x in lines]
    assert found == [("a", 0, True, "feedback"), ("b", 0, 2.5, "feedback")]
    assert all(set(x) == {"at", "request_id", "row", "outcome", "source"} for x in lines)


GOOD = {"request_id": "ok", "outcome": 1}


@pytest.mark.parametrize(("bad", "words"), [
    ("not a dict", ["item 2", "not an object"]),
    ({"request_id": "r", "outcome": 1, "label": 2}, ["item 2", "unknown field 'label'"]),
    ({"outcome": 1}, ["item 2", "'request_id'"]),
    ({"request_id": 12, "outcome": 1}, ["item 2", "'request_id'", "int"]),
    ({"request_id": "a" * 65, "outcome": 1}, ["item 2", "'request_id'", "64"]),
    ({"request_id": "../etc", "outcome": 1}, ["item 2", "'request_id'"]),
    ({"request_id": "r", "row": -1, "outcome": 1}, ["item 2", "'row'", ">= 0"]),
    ({"request_id": "r", "row": True, "outcome": 1}, ["item 2", "'row'"]),
    ({"request_id": "r", "row": "1", "outcome": 1}, ["item 2", "'row'"]),
    ({"request_id": "r"}, ["item 2", "'outcome'", "nothing"]),
    ({"request_id": "r", "outcome": None}, ["item 2", "'outcome'"]),
    ({"request_id": "r", "outcome": {"a": 1}}, ["item 2", "'outcome'", "dict"]),
    ({"request_id": "r", "outcome": float("nan")}, ["item 2", "'outcome'", "finite"]),
    ({"request_id": "r", "outcome": "x" * 1001}, ["item 2", "'outcome'", "1,000"]),
])  # fmt: skip
def test_an_invalid_item_refuses_the_whole_batch_naming_it(ws, bad, words):
    with pytest.raises(ValidationError) as err:
        record_outcomes(ws, "m", [GOOD, GOOD, bad, GOOD])
    assert all(word in str(err.value) for word in words), str(err.value)
    assert outcome_files(ws, "m") == []  # nothing written, not even the good ones


def test_batches_that_are_not_lists_empty_or_too_large_are_refused(ws):
    for items, words in [(GOOD, "a list"), ([], "No outcomes"), ([GOOD] * (MAX_ITEMS + 1), "at most 10,000")]:
        with pytest.raises(ValidationError, match=words):
            record_outcomes(ws, "m", items)
    with pytest.raises(ValidationError, match="source"):
        record_outcomes(ws, "m", [GOOD], source="guess")
    assert outcome_files(ws, "m") == []
    assert record_outcomes(ws, "m", [GOOD] * MAX_ITEMS)["duplicates"] == MAX_ITEMS - 1


def test_concurrent_feedback_counts_each_id_once(ws):
    log_predictions(ws, "m", [{"request_id": f"r{i}", "prediction": 0} for i in range(50)])
    results: list[dict] = []

    def send() -> None:
        results.append(record_outcomes(ws, "m", [{"request_id": f"r{i}", "outcome": 1} for i in range(100)]))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["recorded"] for r in results) == 800 and sum(r["duplicates"] for r in results) == 700
    assert sum(r["unknown"] for r in results) == 50  # r50..r99 were never predicted
    assert joined(ws, "m")[1] == {"outcomes": 100, "matched": 50, "duplicates": 700, "unknown": 50, "pending": 0}


def test_log_outcomes_from_a_dataframe_a_csv_and_a_snapshot(ws, model, tmp_path):
    predicted = [{"request_id": f"{i:04d}", "row": r, "prediction": 0} for i in range(6) for r in (0, 1)]
    log_predictions(ws, model, predicted)
    frame = pd.DataFrame({"rid": ["0000", "0000", "0001"], "line": [0, 1, 0], "label": [0, 1, 1]})
    assert wb.log_outcomes(model, frame, id_column="rid", outcome_column="label", row_column="line") == {
        "model": model, "source": "a DataFrame", "recorded": 3, "duplicates": 0, "unknown": 0}  # fmt: skip

    csv = tmp_path / "late.csv"
    csv.write_text("request_id,outcome\n0002,1\n0003,0\n0000,1\n9999,2\n")  # ids of digits stay text ("0002")
    counts = wb.log_outcomes(model, str(csv))
    assert counts == {"model": model, "source": f"csv {csv}", "recorded": 4, "duplicates": 1, "unknown": 1}
    parquet = tmp_path / "late.parquet"
    pd.DataFrame({"request_id": ["0004"], "row": [1.0], "outcome": [1]}).to_parquet(parquet)
    assert wb.log_outcomes(model, parquet, row_column="row")["recorded"] == 1

    wb.snapshot("labels", pd.DataFrame({"request_id": ["0005", "0005"], "row": [0, 1], "outcome": [0, 0]}))
    counts = wb.log_outcomes(model, "labels@1", row_column="row")
    assert counts == {"model": model, "source": "snapshot labels@1", "recorded": 2, "duplicates": 0, "unknown": 0}

    _, counts = joined(ws, model)
    assert counts == {"outcomes": 9, "matched": 8, "duplicates": 1, "unknown": 1, "pending": 4}
    audited = wb.audit_log(target=f"model:{model}", action="outcomes.recorded")
    assert [e.details["recorded"] for e in audited] == [3, 4, 1, 2]
    assert audited[1].details == {"source": f"csv {csv}", "recorded": 4, "duplicates": 1, "unknown": 1}


def test_bulk_is_checked_whole_before_any_chunk_is_written(ws, model, tmp_path):
    ids = [f"r{i}" for i in range(MAX_ITEMS * 2 + 5)]
    outcomes: list[object] = [1] * len(ids)
    outcomes[MAX_ITEMS * 2 + 2] = None  # in the last chunk
    with pytest.raises(ValidationError, match=r"data row 20003: column 'y' must be"):
        wb.log_outcomes(model, pd.DataFrame({"id": ids, "y": outcomes}), id_column="id", outcome_column="y")
    assert outcome_files(ws, model) == []
    counts = wb.log_outcomes(model, pd.DataFrame({"id": ids, "y": 1}), id_column="id", outcome_column="y")
    assert counts["recorded"] == len(ids) and counts["unknown"] == len(ids)
    assert joined(ws, model)[1]["outcomes"] == len(ids)

    with pytest.raises(ValidationError, match="no column 'label'.*request_id"):
        wb.log_outcomes(model, pd.DataFrame({"request_id": ["a"], "y": [1]}), outcome_column="label")
    with pytest.raises(NotFoundError, match="No model named 'wrong'"):
        wb.log_outcomes("wrong", pd.DataFrame({"request_id": ["a"], "outcome": [1]}))
    with pytest.raises(DataSourceError, match="File not found"):
        wb.log_outcomes(model, str(tmp_path / "missing.csv"))
    with pytest.raises(NotFoundError, match="snapshot"):
        wb.log_outcomes(model, "nolabels@3")
    with pytest.raises(ValidationError, match="no rows"):
        wb.log_outcomes(model, pd.DataFrame({"request_id": [], "outcome": []}))


def test_cli_records_outcomes_and_monitor_name_still_reports_drift(ws, model, cli, wine_frame, tmp_path, capsys):
    rows = wine_frame[FEATURES].head(20).to_dict(orient="records")
    log_predictions(ws, model, [{"request_id": f"req{i}", "input": row, "prediction": 0} for i, row in enumerate(rows)])
    (tmp_path / "labels.csv").write_text("rid,truth\nreq0,0\nreq1,1\nreq1,0\nlost,1\n")

    proc = cli("monitor", "outcomes", model, "--from", "labels.csv", "--id-column", "rid", "--outcome-column",
               "truth", "--json", check=True)  # fmt: skip
    answer = json.loads(proc.stdout)
    assert answer["recorded"] | {"source": None} == {"model": model, "source": None, "recorded": 4, "duplicates": 1,
                                                     "unknown": 1}  # fmt: skip
    assert answer["counts"] == {"outcomes": 3, "matched": 2, "duplicates": 1, "unknown": 1, "pending": 18}

    shown = cli("monitor", "outcomes", model, check=True).stdout  # no --from: only the counts
    assert shown.splitlines()[-2:] == ["outcomes\tmatched\tpending\tunknown\tduplicates", "3\t2\t18\t1\t1"]

    drift = json.loads(cli("monitor", model, "--json", check=True).stdout)  # `monitor NAME` is still drift
    assert drift["model"] == model and drift["live_rows"] == 20

    wrong_column = ["--from", "labels.csv", "--id-column", "rid", "--outcome-column", "nope"]
    for args, words in [(["--from", "labels.csv"], "no column 'request_id'"), (wrong_column, "no column 'nope'"),
                        (["--from", "nosuch.csv"], "File not found")]:  # fmt: skip
        proc = run_cli_in_process(capsys, "monitor", "outcomes", model, *args)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    shown = run_cli_in_process(capsys, "monitor", "outcomes", "--help").stdout
    assert "monitor outcomes [OPTIONS]" in shown and "--outcome-column" in shown and "--row-column" in shown
    assert "monitor outcomes NAME --from" in " ".join(run_cli_in_process(capsys, "monitor", "--help").stdout.split())

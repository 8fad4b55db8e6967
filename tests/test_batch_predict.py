"""Batch scoring (issue 20): `wb.predict` / `workbench predict` over a real snapshot with a real
promoted model, checked against scikit-learn on the same rows; schema errors are the model
server's own messages and leave nothing behind; `--log` feeds the drift report and live quality."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import VENV_BIN
from model_fixtures import module_workspace, train_run
from sklearn.metrics import accuracy_score

import workbench as wb
from workbench.errors import NotFoundError, ValidationError, WorkbenchError
from workbench.serving.inputs import InputError, conform
from workbench.workspace import init_workspace, use_workspace

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]


@pytest.fixture(scope="module")
def scoring(tmp_path_factory: pytest.TempPathFactory, wine_frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """A workspace with snapshot `wine` (an id, 13 features, the label) and model `wine@production`."""
    root = tmp_path_factory.mktemp("batch")
    with module_workspace(root) as ws:
        frame = wine_frame.copy()
        frame.insert(0, "sample_id", np.arange(len(frame)))
        wb.snapshot("wine", frame)
        wb.promote(train_run(), "wine")
        estimator, version = wb.load_model("wine@production")
        yield {"ws": ws, "root": root, "frame": frame, "estimator": estimator, "version": version}


def _leftovers(ws: Any) -> list[str]:
    """Files a scoring may have left in the scratch folder (DuckDB's spill folder aside)."""
    return [p.name for p in ws.tmp_dir.glob("*") if p.name != "duckdb"] if ws.tmp_dir.is_dir() else []


def test_predictions_and_probabilities_equal_the_model_on_the_same_rows(scoring):
    estimator, frame = scoring["estimator"], scoring["frame"]
    scored = wb.predict("wine@production", "wine", columns=["sample_id"], proba=True)
    assert list(scored.columns) == ["sample_id", "prediction", "proba_0", "proba_1", "proba_2"]
    assert scored["sample_id"].tolist() == frame["sample_id"].tolist()  # rows in the snapshot's order
    assert np.array_equal(scored["prediction"].to_numpy(), estimator.predict(frame[FEATURES]))
    assert np.array_equal(scored[["proba_0", "proba_1", "proba_2"]].to_numpy(),
                          estimator.predict_proba(frame[FEATURES]))  # fmt: skip
    assert scored.attrs["model"] == "wine@1" and scored.attrs["input"] == "wine@1"
    every = wb.predict("wine@1", frame)  # a DataFrame in, every column kept by default
    assert list(every.columns) == [*frame.columns, "prediction"]
    assert np.array_equal(every["prediction"].to_numpy(), scored["prediction"].to_numpy())


def test_tiny_chunks_give_the_same_result_as_one_chunk(scoring):
    one = wb.predict("wine@production", "wine", proba=True, chunk_rows=1_000_000)
    seen: list[tuple[int, int]] = []
    tiny = wb.predict("wine@production", "wine", proba=True, chunk_rows=7,
                      progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    pd.testing.assert_frame_equal(tiny, one)
    assert len(seen) == -(-len(scoring["frame"]) // 7) and seen[-1] == (len(scoring["frame"]),) * 2


def test_into_registers_a_snapshot_with_lineage_once(scoring):
    first = wb.predict("wine@production", "wine", into="wine_scored", columns=["sample_id", "target"])
    assert first.created and first.ref == "wine_scored@1" and first.row_count == len(scoring["frame"])
    assert first.source == "predict: wine@1 on wine@1"
    assert first.description == "Predictions of wine@1 for wine@1"
    assert [c["name"] for c in first.columns] == ["sample_id", "target", "prediction"]
    stored = wb.load_snapshot("wine_scored@1")
    assert np.array_equal(stored["prediction"].to_numpy(), scoring["estimator"].predict(scoring["frame"][FEATURES]))
    again = wb.predict("wine@1", "wine@1", into="wine_scored", columns=["sample_id", "target"], chunk_rows=50)
    assert not again.created and again.ref == first.ref and again.content_hash == first.content_hash
    entries = wb.audit_log(action="model.batch_scored")
    assert [e.details["into"] for e in entries[-2:]] == ["wine_scored@1", "wine_scored@1"]
    assert entries[-1].target == "model:wine@1" and entries[-1].details["input"] == "wine@1"
    assert entries[-1].details["created"] is False
    assert not _leftovers(scoring["ws"])


def _server_message(frame: pd.DataFrame, schema: list[dict[str, str]]) -> str:
    """What the model server answers (422) for these rows."""
    with pytest.raises(InputError) as refused:
        conform({name: frame[name].tolist() for name in frame.columns if name in {c["name"] for c in schema}},
                schema)  # fmt: skip
    return str(refused.value)


@pytest.mark.parametrize("damage", ["missing column", "null in a later chunk", "text in a number column"])
def test_a_schema_mismatch_gives_the_servers_message_and_leaves_nothing(scoring, damage):
    frame, schema, ws = scoring["frame"].copy(), scoring["version"].schema, scoring["ws"]
    if damage == "missing column":
        frame = frame.drop(columns=["proline"])
    elif damage == "null in a later chunk":
        frame.loc[130, "proline"] = None
    else:
        frame["proline"] = frame["proline"].astype(str)
    expected = _server_message(frame, schema)
    log_folder = ws.root / "predictions" / "wine"
    before = sorted(p.name for p in log_folder.iterdir()) if log_folder.is_dir() else []
    with pytest.raises(ValidationError) as refused:
        wb.predict("wine@production", frame, into="broken", log=True, chunk_rows=16)
    assert refused.value.message == f"Cannot score the DataFrame with wine@1: {expected}"
    assert "proline" in refused.value.message and "proline (float64)" in refused.value.hint
    if damage == "null in a later chunk":  # the row in the whole table, as the server names a row of a request
        assert "in row 130" in expected
    assert "broken" not in set(wb.list_snapshots()["name"])
    assert (sorted(p.name for p in log_folder.iterdir()) if log_folder.is_dir() else []) == before
    assert not _leftovers(ws)


def test_unknown_model_snapshot_or_column_are_clear_errors(scoring):
    with pytest.raises(NotFoundError, match="No model named 'nope'"):
        wb.predict("nope@production", "wine")
    with pytest.raises(NotFoundError, match="No snapshot named 'nothing'"):
        wb.predict("wine@production", "nothing")
    with pytest.raises(NotFoundError, match=r"Snapshot wine@9 does not exist"):
        wb.predict("wine@production", "wine@9")
    with pytest.raises(NotFoundError, match=r"Cannot score wine@1: it has no column\(s\) nope"):
        wb.predict("wine@production", "wine", columns=["sample_id", "nope"])
    with pytest.raises(ValidationError, match="has the name of a column the output adds"):
        wb.predict("wine@production", scoring["frame"].assign(prediction=1))
    with pytest.raises(WorkbenchError, match="Cannot score list"):
        wb.predict("wine@production", [1, 2])


def _cli(root: Any, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WORKBENCH_HOME=str(root / ".workbench"), COLUMNS="200", NO_COLOR="1")
    return subprocess.run([str(VENV_BIN / "workbench"), *args], capture_output=True, text=True, env=env,
                          cwd=root, timeout=120)  # fmt: skip


@pytest.mark.slow
def test_cli_predict_prints_rows_or_registers_them(scoring):
    root, estimator, frame = scoring["root"], scoring["estimator"], scoring["frame"]
    shown = _cli(root, "predict", "wine@production", "--snapshot", "wine@1", "--columns", "sample_id", "--proba",
                 "--limit", "5", "--json")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    answer = json.loads(shown.stdout)
    assert answer["model"] == "wine@1" and answer["rows"] == len(frame)
    assert answer["columns"] == ["sample_id", "prediction", "proba_0", "proba_1", "proba_2"]
    assert [r["prediction"] for r in answer["predictions"]] == estimator.predict(frame[FEATURES].head(5)).tolist()
    table = _cli(root, "predict", "wine", "--snapshot", "wine", "--into", "cli_scored", "--columns", "sample_id")
    assert table.returncode == 0, table.stderr
    assert f"{len(frame)} rows -> cli_scored@1 (registered)" in table.stdout
    assert wb.get_snapshot("cli_scored@1").source == "predict: wine@1 on wine@1"
    refused = _cli(root, "predict", "wine@production", "--snapshot", "wine", "--columns", "nope")
    assert refused.returncode == 2 and "no column(s) nope" in refused.stderr and "Traceback" not in refused.stderr


def test_logged_batch_predictions_feed_drift_and_live_quality(scoring):
    ws, frame, estimator = scoring["ws"], scoring["frame"], scoring["estimator"]
    scored = wb.predict("wine@production", "wine", columns=["sample_id", "target"], log=True, chunk_rows=50)
    request_id = scored.attrs["request_id"]
    assert request_id.startswith("batch-") and list(scored["request_id"].unique()) == [request_id]
    assert scored["row"].tolist() == list(range(len(frame)))
    files = list((ws.root / "predictions" / "wine").glob(f"*-{request_id}.jsonl"))
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [line["row"] for line in lines] == list(range(len(frame))) and all(line["batch"] for line in lines)
    assert [line["prediction"] for line in lines] == estimator.predict(frame[FEATURES]).tolist()
    assert set(lines[0]["proba"]) == {"0", "1", "2"} and lines[0]["input"] == frame[FEATURES].iloc[0].to_dict()

    drift = wb.drift_report("wine@production")
    assert drift.live_rows == len(frame)  # the batch rows are the live data: the training data itself here
    assert (drift.table["psi"] < 0.01).all()

    recorded = wb.log_outcomes("wine", scored.rename(columns={"target": "outcome"}), row_column="row")
    assert recorded["recorded"] == len(frame) and recorded["unknown"] == 0
    quality = wb.live_quality("wine", window="1d", since=None)
    served = quality.table[~quality.table["shadow"]]
    assert served["rows"].sum() == len(frame) and served["outcomes"].sum() == len(frame)
    assert served["requests"].sum() == 1
    expected = accuracy_score(frame["target"], estimator.predict(frame[FEATURES]))
    assert served["accuracy"].iloc[0] == pytest.approx(expected)


@pytest.mark.slow
def test_a_client_of_a_team_server_scores_locally_and_uploads_the_result(tmp_path, wine_frame):
    """No new server routes: the model and the snapshot's file come through the client's download
    cache, the scoring runs in the client, and --into uploads the result like `snapshot add`."""
    from test_team_logging import client_env
    from test_team_server import add_user, start_server

    home = tmp_path / "team" / ".workbench"
    use_workspace(init_workspace(home))
    try:
        wb.snapshot("wine", wine_frame)
        wb.promote(train_run(), "wine")
        expected = wb.load_model("wine@production")[0].predict(wine_frame[FEATURES]).tolist()
    finally:
        use_workspace(None)
    token = add_user(home, "ed", "editor")
    server = start_server(home)
    try:
        env = client_env(tmp_path / "client", server.url, token, COLUMNS="200", NO_COLOR="1")
        proc = subprocess.run([str(VENV_BIN / "workbench"), "predict", "wine@production", "--snapshot", "wine",
                               "--into", "team_scored", "--columns", "target", "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["snapshot"]["ref"] == "team_scored@1"
        logged = subprocess.run([str(VENV_BIN / "workbench"), "predict", "wine", "--snapshot", "wine", "--log"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert logged.returncode == 2 and "--home" in logged.stderr and "Traceback" not in logged.stderr
    finally:
        server.stop()
    from workbench.snapshots.store import get, load

    ws = wb.use(home)
    try:
        assert get("team_scored@1", ws).source == "upload (parquet): predict: wine@1 on wine@1"  # the server's prefix
        assert load("team_scored@1", ws)["prediction"].tolist() == expected
    finally:
        use_workspace(None)


def test_the_output_frame_is_what_arrow_makes_of_it() -> None:
    """`_frame` joins plain numeric columns as numpy (faster); every column equals `to_pandas`'s."""
    import pyarrow as pa

    from workbench.models.batch import _frame

    parts = [
        pa.RecordBatch.from_pydict({"id": ["a", "b"], "n": [1, None], "x": [0.5, 1.5], "ok": [True, False],
                                    "prediction": [1, 2]}),
        pa.RecordBatch.from_pydict({"id": ["c", None], "n": [3, 4], "x": [2.5, float("nan")], "ok": [False, True],
                                    "prediction": [3, 4]}),
    ]  # fmt: skip
    pd.testing.assert_frame_equal(_frame(parts), pa.Table.from_batches(parts).to_pandas())

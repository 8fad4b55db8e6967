"""`workbench import mlflow` against a real MLflow store that MLflow itself writes in the test.

The store (SQLite, built once per module) has two experiments plus an `untrusted` one, runs with
params, step metric histories with explicit timestamps, tags, a FAILED and a RUNNING run, and
registered models: `wine-clf` (two pickled scikit-learn versions, aliases `champion` and
`previous`), `skops-clf` (saved by MLflow with skops), `pyfunc-model` (a custom pyfunc) and
`evil`, whose pickle writes a marker file when it is loaded: the attack must not run unless the
user trusts the store.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402

from workbench.catalog import connect  # noqa: E402
from workbench.errors import NotFoundError, WorkbenchError  # noqa: E402
from workbench.importers.mlflow import import_mlflow  # noqa: E402
from workbench.importers.mlflow_runs import workbench_run_id  # noqa: E402
from workbench.workspace import init_workspace  # noqa: E402

pytestmark = pytest.mark.slow  # MLflow builds its store in ~10 s; each CLI call imports MLflow (~3 s)

VENV_BIN = Path(sys.executable).parent
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z, in MLflow's milliseconds
FEATURES = ["alcohol", "malic_acid", "ash"]


class _Evil:
    """Pickles to `exec(...)`: loading it writes the marker file (what a malicious store would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))

    def predict(self, X):  # pragma: no cover - never called
        return X


def _data(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(40, 3)), columns=FEATURES)
    return X, (X["alcohol"] + 0.3 * X["ash"] > 0).astype(int).to_numpy()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    marker = root / "pwned"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = {name: client.create_experiment(name, artifact_location=(root / f"art-{i}").as_uri())
           for i, name in enumerate(["wine-mlflow", "other exp/with spaces", "untrusted"])}  # fmt: skip
    X, y = _data(0)

    def run(experiment: str, start: int, status: str | None, metrics: dict[str, list[tuple[int, float, int]]],
            params: dict[str, str], tags: dict[str, str], models=()) -> str:  # fmt: skip
        created = client.create_run(exp[experiment], start_time=start, tags=tags)
        rid = created.info.run_id
        points = [Metric(k, v, ts, step) for k, series in metrics.items() for step, v, ts in series]
        client.log_batch(rid, params=[Param(k, v) for k, v in params.items()], metrics=points)
        if models:
            with mlflow.start_run(run_id=rid):
                for log in models:
                    log()
        if status is not None:
            client.set_terminated(rid, status, end_time=start + 60_000)
        return rid

    def sklearn_model(model, registered: str, fmt: str):
        return lambda: mlflow.sklearn.log_model(model, name=f"model-{registered}", serialization_format=fmt,
                                                pip_requirements=[], input_example=X.head(3),
                                                registered_model_name=registered)  # fmt: skip

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [0] * len(model_input)

    pyfunc = lambda: mlflow.pyfunc.log_model(name="pf", python_model=Constant(), pip_requirements=[],  # noqa: E731
                                             registered_model_name="pyfunc-model")  # fmt: skip
    first = LogisticRegression(C=1.0).fit(X, y)
    second = LogisticRegression(C=0.05).fit(X, y)
    loss = [(s, 1.0 / (s + 1), T0 + 1000 * s + 7) for s in range(6)] + [(5, 0.1, T0 + 9000)]  # two points at step 5
    ids = {
        "a": run("wine-mlflow", T0, "FINISHED", {"loss": loss, "acc": [(0, 0.5, T0 + 3), (2, 0.75, T0 + 5)]},
                 {"lr": "0.1", "depth": "3", "solver": "lbfgs", "tiny": "1e-3"},
                 {"team": "ml", "mlflow.runName": "first", "mlflow.user": "alice",
                  "mlflow.source.git.commit": "abc123"},
                 [sklearn_model(first, "wine-clf", "pickle"), pyfunc]),  # fmt: skip
        "b": run("wine-mlflow", T0 + 120_000, "FAILED", {"loss": [(0, 2.5, T0 + 120_001)]}, {"lr": "5"}, {}),
        "d": run("wine-mlflow", T0 + 240_000, None, {"loss": [(0, 1.5, T0 + 240_001)]}, {}, {}),  # still RUNNING
        "c": run("other exp/with spaces", T0 + 360_000, "FINISHED", {"f1": [(0, 0.9, T0 + 360_500)]},
                 {"C": "0.05"}, {"note": "second"},
                 [sklearn_model(second, "wine-clf", "pickle"),
                  sklearn_model(second, "skops-clf", "skops")]),  # fmt: skip
        "e": run("untrusted", T0 + 480_000, "FINISHED", {}, {}, {},
                 [lambda: mlflow.sklearn.log_model(_Evil(marker), name="model", serialization_format="pickle",
                                                   pip_requirements=[], registered_model_name="evil")]),  # fmt: skip
    }
    client.set_registered_model_alias("wine-clf", "champion", "2")
    client.set_registered_model_alias("wine-clf", "previous", "1")
    yield SimpleNamespace(uri=uri, client=client, ids=ids, marker=marker, root=root, X=X, run=run)
    mlflow.set_tracking_uri(previous)


@pytest.fixture()
def workspace(tmp_path):
    return init_workspace(tmp_path / ".workbench")


def _rows(ws, sql: str, params: list) -> list[tuple]:
    with connect(ws) as con:
        return con.execute(sql, params).fetchall()


def _forbid_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces next to the marker file: any unpickling in this process fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled without --trust-models")

    import cloudpickle

    for module in (pickle, cloudpickle):
        monkeypatch.setattr(module, "load", refuse)
        monkeypatch.setattr(module, "loads", refuse)


def test_import_brings_every_field_and_runs_no_pickle(store, workspace, monkeypatch):
    import workbench as wb

    store.marker.unlink(missing_ok=True)
    _forbid_unpickling(monkeypatch)
    report = import_mlflow(store.uri, ws=workspace)
    counts = report.counts()
    assert counts["runs_imported"] == 4 and counts["runs_skipped"] == 1  # the RUNNING run waits
    assert [s["mlflow_run_id"] for s in report.runs_skipped] == [store.ids["d"]]
    assert "RUNNING in MLflow" in report.runs_skipped[0]["reason"]
    assert {e["mlflow_name"]: e["experiment"] for e in report.experiments} == {
        "wine-mlflow": "wine-mlflow", "other exp/with spaces": "other-exp-with-spaces", "untrusted": "untrusted",
        "Default": "Default"}  # fmt: skip

    client = store.client
    for key in ("a", "b", "c", "e"):
        source = client.get_run(store.ids[key])
        run_id = workbench_run_id(source.info.run_id, source.info.start_time)
        assert run_id in report.runs_imported
        run = wb.get_run(run_id, ws=workspace)
        assert run.status == source.info.status.lower()
        assert run.kind == "imported"
        assert run.created_at.timestamp() * 1000 == source.info.start_time
        assert run.started_at.timestamp() * 1000 == source.info.start_time
        assert run.ended_at.timestamp() * 1000 == source.info.end_time
        assert run.duration_s == 60
        assert {k: str(v) for k, v in run.params.items()} == source.data.params
        assert source.data.tags.items() <= run.tags.items()
        assert run.tags["mlflow.run_id"] == source.info.run_id
        assert run.tags["mlflow.experiment_id"] == source.info.experiment_id
        assert run.tags["mlflow.tracking_uri"] == store.uri and run.tags["imported_from"] == "mlflow"
        assert run.tags["mlflow.experiment_name"] == client.get_experiment(source.info.experiment_id).name
        assert "imported_at" in run.tags
        for metric in source.data.metrics:
            history = sorted(client.get_metric_history(source.info.run_id, metric), key=lambda m: (m.step, m.timestamp))
            rows = _rows(workspace, "SELECT step, value, logged_at FROM run_metrics WHERE run_id = ? AND key = ? "
                         "ORDER BY step, logged_at", [run_id, metric])  # fmt: skip
            assert [(s, v, round(t.timestamp() * 1000)) for s, v, t in rows] == [
                (m.step, m.value, m.timestamp) for m in history]  # fmt: skip
    first = wb.get_run(workbench_run_id(store.ids["a"], T0), ws=workspace)
    assert first.params == {"lr": 0.1, "depth": 3, "solver": "lbfgs", "tiny": "1e-3"}  # numbers where exact
    assert first.creator == "alice" and first.git_commit == "abc123" and first.experiment == "wine-mlflow"
    assert len(wb.metric_history(first.run_id, "loss", ws=workspace)) == 7
    failed = wb.get_run(workbench_run_id(store.ids["b"], T0 + 120_000), ws=workspace)
    assert failed.status == "failed" and failed.error["ename"] == "Failed"
    assert counts["metric_points"] == 7 + 2 + 1 + 1

    versions = {(v["model"], v["version"]): v for v in report.models["versions"]}
    assert versions[("skops-clf", 1)]["status"] == "converted"  # skops: read through the allow-list, no trust needed
    for key in [("wine-clf", 1), ("wine-clf", 2), ("evil", 1)]:
        assert versions[key]["status"] == "not converted" and "--trust-models" in versions[key]["reason"]
    assert versions[("pyfunc-model", 1)]["status"] == "referenced"
    assert not store.marker.exists()  # the malicious pickle was never loaded
    model, version = wb.load_model("skops-clf", ws=workspace)
    assert version.meta["imported_from"]["model"] == "skops-clf"
    expected = mlflow.sklearn.load_model("models:/skops-clf/1")  # the test trusts its own store
    np.testing.assert_array_equal(model.predict(store.X), expected.predict(store.X))
    assert first.tags["mlflow.registered_model.pyfunc-model.v1"].startswith("models:/pyfunc-model/1 (python_function")
    assert {a["alias"]: a["status"] for a in report.models["aliases"]} == {"champion": "not set", "previous": "not set"}
    [entry] = wb.audit_log(action="import.mlflow", ws=workspace)
    assert entry.details["runs_imported"] == 4 and entry.details["versions_converted"] == 1


def test_trust_models_converts_sklearn_and_carries_aliases(store, workspace):
    import workbench as wb

    store.marker.unlink(missing_ok=True)
    chosen = ["wine-mlflow", "other exp/with spaces"]
    report = import_mlflow(store.uri, chosen, trust_models=True, ws=workspace)
    statuses = {(v["model"], v["version"]): (v["status"], v["ref"]) for v in report.models["versions"]}
    assert statuses[("wine-clf", 1)] == ("converted", "wine-clf@1")
    assert statuses[("wine-clf", 2)] == ("converted", "wine-clf@2")
    assert statuses[("evil", 1)][0] == "not converted"  # its run is in an experiment not imported
    assert not store.marker.exists()
    assert {a["alias"]: a["status"] for a in report.models["aliases"]} == {"champion": "set", "previous": "set"}
    model, version = wb.load_model("wine-clf@champion", ws=workspace)
    assert version.version == 2 and version.run_id == workbench_run_id(store.ids["c"], T0 + 360_000)
    assert version.meta["imported_from"] == {
        "tracking_uri": store.uri, "model": "wine-clf", "version": 2, "source": version.meta["imported_from"]["source"],
        "mlflow_run_id": store.ids["c"], "serialization_format": "pickle"}  # fmt: skip
    assert version.schema == [{"name": c, "dtype": "float64"} for c in FEATURES]  # from MLflow's input example
    expected = mlflow.sklearn.load_model("models:/wine-clf@champion")
    np.testing.assert_array_equal(model.predict(store.X), expected.predict(store.X))
    np.testing.assert_allclose(model.predict_proba(store.X), expected.predict_proba(store.X))
    assert wb.load_model("wine-clf@previous", ws=workspace)[1].version == 1

    again = import_mlflow(store.uri, chosen, trust_models=True, ws=workspace)  # nothing loaded or moved twice
    assert {v["status"] for v in again.models["versions"] if v["model"] == "wine-clf"} == {"already imported"}
    assert {a["status"] for a in again.models["aliases"]} == {"already set"}
    assert again.counts()["runs_imported"] == 0


def test_trusting_the_store_runs_its_code(store, workspace):
    """What --trust-models means, shown with the same malicious model: its pickle does run."""
    store.marker.unlink(missing_ok=True)
    report = import_mlflow(store.uri, ["untrusted"], trust_models=True, ws=workspace)
    assert store.marker.read_text() == "pwned"
    store.marker.unlink()
    [evil] = [v for v in report.models["versions"] if v["model"] == "evil"]
    assert evil["status"] == "not converted"  # and what it loaded is no model Workbench can store


def test_reimport_adds_only_what_is_new(store, workspace):
    first = import_mlflow(store.uri, ["wine-mlflow"], ws=workspace)
    assert first.counts()["runs_imported"] == 2
    again = import_mlflow(store.uri, ["wine-mlflow"], ws=workspace)
    assert again.counts()["runs_imported"] == 0 and again.counts()["runs_already_imported"] == 2
    assert again.counts()["metric_points"] == 0
    new = store.run("wine-mlflow", T0 + 600_000, "FINISHED", {"loss": [(0, 0.3, T0 + 600_010)]}, {"lr": "0.2"}, {})
    third = import_mlflow(store.uri, ["wine-mlflow"], ws=workspace)
    assert third.runs_imported == [workbench_run_id(new, T0 + 600_000)]
    assert third.counts()["metric_points"] == 1
    running = store.ids["d"]
    store.client.set_terminated(running, "FINISHED", end_time=T0 + 250_000)  # the RUNNING run has ended since
    fourth = import_mlflow(store.uri, ["wine-mlflow"], ws=workspace)
    assert fourth.runs_imported == [workbench_run_id(running, T0 + 240_000)]
    assert [s["reason"] for s in fourth.runs_skipped] == ["already imported"] * 3
    rows = _rows(workspace, "SELECT count(*) FROM run_tags WHERE key = 'mlflow.run_id'", [])
    assert rows == [(4,)]
    store.client.delete_run(new)  # the store as the other tests expect it
    store.client.update_run(running, status="RUNNING")


def test_cli_json_and_errors(store, workspace):
    env = {**os.environ, "WORKBENCH_HOME": str(workspace.root)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "workbench"), "import", "mlflow", *args], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    done = cli("--tracking-uri", store.uri, "--experiment", "other exp/with spaces", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"]["runs_imported"] == 1 and report["counts"]["versions_converted"] == 1  # skops-clf
    assert [e["experiment"] for e in report["experiments"]] == ["other-exp-with-spaces"]

    missing = cli("--tracking-uri", f"sqlite:///{store.root}/nope.db")
    assert missing.returncode == 2 and "No MLflow database" in missing.stderr and "Traceback" not in missing.stderr
    assert not (store.root / "nope.db").exists()  # MLflow's client would have created it
    unknown = cli("--tracking-uri", store.uri, "--experiment", "wine")
    assert unknown.returncode == 2 and "No MLflow experiment named 'wine'" in unknown.stderr
    assert "wine-mlflow" in unknown.stderr  # the hint lists what there is


def test_unreachable_server_and_missing_mlflow(store, workspace, monkeypatch):
    with pytest.raises(WorkbenchError, match="Cannot read the MLflow tracking store at http://127.0.0.1:9"):
        import_mlflow("http://user:secret@127.0.0.1:9", ws=workspace)
    with pytest.raises(NotFoundError, match="No MLflow tracking folder"):
        import_mlflow(str(store.root / "mlruns-missing"), ws=workspace)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(WorkbenchError, match=r"pip install 'workbench\[mlflow\]'"):
        import_mlflow(store.uri, ws=workspace)


def test_file_store(tmp_path, workspace, monkeypatch):
    """An old `./mlruns` folder (MLflow's file store, which MLflow 3 opens only when asked to)."""
    folder = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(folder.as_uri())
    exp = client.create_experiment("legacy")
    rid = client.create_run(exp, start_time=T0).info.run_id
    client.log_batch(rid, metrics=[Metric("loss", 0.5, T0 + 10, 0), Metric("loss", 0.25, T0 + 20, 1)],
                     params=[Param("n", "7")])  # fmt: skip
    client.set_terminated(rid, "KILLED", end_time=T0 + 5000)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    report = import_mlflow(str(folder), ["legacy"], ws=workspace)
    assert report.counts()["runs_imported"] == 1 and report.counts()["metric_points"] == 2
    import workbench as wb

    run = wb.get_run(report.runs_imported[0], ws=workspace)
    assert run.status == "killed" and run.params == {"n": 7} and run.duration_s == 5
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # set only while importing
    assert import_mlflow(folder.as_uri(), ws=workspace).counts()["runs_already_imported"] == 1

"""Tracked runs with real kernels: what a run records, failures, lineage, interactive runs, rerun."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest

import workbench as wb
from workbench.runs.launch import ReproducibilityWarning
from workbench.runs.store import executed_notebook_path

TRAIN = """
import workbench as wb
import plotly.graph_objects as go
from sklearn.linear_model import LogisticRegression
df = wb.load_snapshot("wine")
X, y = df.drop(columns=["target"]), df["target"]
for step in range(steps):
    wb.log_metric("loss", 1.0 / (step + 1), step=step)
model = LogisticRegression(C=C, max_iter=200).fit(X, y)
wb.log_metrics({"accuracy": float(model.score(X, y)), "rows": len(df)})
wb.log_param("features", X.shape[1])
wb.set_tag("stage", "test")
wb.log_figure(go.Figure(go.Scatter(y=[1, 2, 3])), "curve")
wb.log_model(model, "classifier", sample=X.head())
with open("notes.txt", "w") as fh:
    fh.write("hello")
wb.log_artifact("notes.txt", name="docs/notes.txt")
print("trained")
"""


@pytest.fixture()
def train_nb(notebook, ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    return notebook("train", "C = 1.0\nsteps = 3  # epochs", TRAIN)


def test_a_run_records_params_metrics_artifacts_lineage_and_environment(train_nb, wine_frame):
    run = wb.run(train_nb, {"C": 0.5, "steps": 4}, experiment="wine-lr", tags={"owner": "me"}, autolog=False)

    assert run.status == "finished", run.error
    assert run.experiment == "wine-lr"
    assert run.params == {"C": 0.5, "steps": 4, "features": 13}
    assert run.metrics["loss"] == pytest.approx(0.25)
    assert run.metrics["rows"] == len(wine_frame)
    assert run.tags == {"owner": "me", "stage": "test"}
    assert run.inputs == ["wine@1"]
    assert run.duration_s > 0 and run.started_at and run.ended_at
    assert run.python_version and "pandas" in run.packages and run.host
    assert run.notebook == str(train_nb) and len(run.notebook_hash) == 64

    history = wb.metric_history(run.run_id, "loss")
    assert history["step"].tolist() == [0, 1, 2, 3]
    assert history["value"].tolist() == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4])

    kinds = {a.name: a.kind for a in run.artifacts}
    expected = {"classifier": "model", "curve": "figure", "docs/notes.txt": "file", "stdout": "text"}
    assert kinds.items() >= expected.items()  # plus 'stderr' when the notebook warned
    assert "trained" in wb.load_artifact(run, "stdout")
    assert wb.load_artifact(run, "docs/notes.txt") == b"hello"
    assert wb.load_artifact(run, "curve").data[0].y == (1, 2, 3)
    model = wb.load_artifact(run, "classifier")
    X = wine_frame.drop(columns=["target"])
    assert (model.predict(X) == model.predict(X)).all()
    schema = run.artifact("classifier").meta["schema"]
    assert [c["name"] for c in schema] == list(X.columns)

    executed = json.loads(executed_notebook_path(run).read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])


def test_a_failing_cell_is_recorded_with_its_traceback_and_keeps_earlier_logs(notebook, ws):
    nb = notebook(
        "fails",
        "x = 1",
        "import workbench as wb\nwb.log_metric('before', 1.0)",
        "print('ok')",
        "def boom():\n    raise ValueError('bad value')\nboom()",
    )
    run = wb.run(nb)

    assert run.status == "failed"
    assert run.error["cell_index"] == 3  # index in the executed notebook (no injected cell: no params)
    assert run.error["ename"] == "ValueError" and run.error["evalue"] == "bad value"
    assert any("boom()" in line for line in run.error["traceback"])
    assert run.metrics == {"before": 1.0}
    assert executed_notebook_path(run).is_file()


def test_rerun_uses_the_same_content_parameters_and_snapshot_versions(train_nb, wine_frame):
    original = wb.run(train_nb, {"C": 0.3}, autolog=False)
    wb.snapshot("wine", wine_frame.head(100))  # wine@2: the rerun must still read wine@1
    train_nb.write_text(train_nb.read_text().replace("trained", "changed"))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = wb.rerun(original.run_id)

    assert any(issubclass(w.category, ReproducibilityWarning) and "changed since" in str(w.message) for w in caught)
    assert again.status == "finished"
    assert again.parent_run_id == original.run_id
    assert again.params == original.params == {"C": 0.3, "steps": 3, "features": 13}  # given, default, logged
    assert again.inputs == ["wine@1"]
    assert again.metrics["rows"] == len(wine_frame)
    assert again.notebook_hash == original.notebook_hash
    assert "trained" in wb.load_artifact(again, "stdout")


def test_interactive_logging_creates_a_run_that_finishes_at_exit(ws):
    code = "import workbench as wb\nwb.log_metric('m', 2.5)\nwb.log_param('p', 'x')\nprint(wb.active_run_id())\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ws.root.parent).stdout.strip()  # fmt: skip
    run = wb.get_run(out)
    assert run.kind == "interactive" and run.experiment == "interactive"
    assert run.status == "finished"
    assert run.metrics == {"m": 2.5} and run.params == {"p": "x"}


def test_logging_rejects_bad_names_and_values(ws):
    with pytest.raises(wb.ValidationError, match="Invalid metric name"):
        wb.log_metric("bad name;drop", 1)
    with pytest.raises(wb.ValidationError, match="must be a number"):
        wb.log_metric("ok", "high")
    with pytest.raises(wb.ValidationError, match="Invalid artifact name"):
        wb.log_text("x", "../../etc/passwd")
    with pytest.raises(wb.ValidationError, match="Invalid artifact name"):
        wb.log_text("x", "/etc/passwd")
    wb.end_run()

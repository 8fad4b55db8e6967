"""Pipelines as code: validation errors with lines and keys, an end-to-end run with a sweep and a
gate that sends the result to staging, and a trigger firing on a new snapshot version."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import run_cli_in_process

import workbench as wb
from workbench.governance.pipelines import changed, load_pipeline, run_pipeline, validate_file
from workbench.governance.triggers import watch

TRAIN_CELLS = (
    "import workbench as wb\nfrom sklearn.linear_model import LogisticRegression\nfrom sklearn.metrics import log_loss",
    'data = wb.load_snapshot(snapshot)\nX, y = data[["alcohol", "proline"]], data["target"]\n'
    "model = LogisticRegression(C=C, max_iter=2000).fit(X, y)",
    'wb.log_metric("log_loss", log_loss(y, model.predict_proba(X)))\nwb.log_metric("accuracy", model.score(X, y))\n'
    'wb.log_model(model, "wine", sample=X.head())',
)


cli = run_cli_in_process


def write(tmp_path, text: str):
    path = tmp_path / "workbench.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_validation_reports_every_problem_with_line_and_key(tmp_path, notebook):
    notebook("train", 'snapshot = "wine"\nC = 1.0', "pass")
    path = write(
        tmp_path,
        """
        pipelines:
          retrain:
            on: {snapshot: wine}
            steps:
              - notebook: train.ipynb
                parms: {C: 1}
              - notebook: missing.ipynb
              - notebook: train.ipynb
                params: {depth: 3}
                sweep: {grid: {C: []}, parallel: 0}
            promote: {model: Bad Name, alias: production}
          ok:
            steps: [{notebook: train.ipynb, params: {C: 2.0}}]
    """,
    )
    with pytest.raises(wb.ValidationError) as raised:
        validate_file(path)
    problems = raised.value.report
    assert problems == [
        "line 6: pipelines.retrain.steps[0].parms: unknown key 'parms' (did you mean 'params'?)",
        f"line 7: pipelines.retrain.steps[1].notebook: file not found: {tmp_path / 'missing.ipynb'}",
        "line 9: pipelines.retrain.steps[2].params.depth: unknown key 'depth' (allowed: C, snapshot)",
        "line 10: pipelines.retrain.steps[2].sweep.grid.C: must be a non-empty list of values",
        "line 10: pipelines.retrain.steps[2].sweep.parallel: must be a whole number of at least 1",
        "line 8: pipelines.retrain.steps[2]: a step with a sweep needs 'select: {metric: ..., mode: min|max}' "
        "to pick its best run",
        "line 11: pipelines.retrain.promote.model: Invalid model name 'Bad Name'.",
    ], problems
    assert str(raised.value).startswith(f"{path} has 7 problems:")

    write(tmp_path, "pipelines:\n  x: [unclosed\n")
    with pytest.raises(wb.ValidationError, match=r"workbench.yaml: line 3: not valid YAML"):
        validate_file(path)
    write(tmp_path, "pipeline:\n  x: {}\n")
    with pytest.raises(
        wb.ValidationError, match="line 1: pipeline: unknown key 'pipeline' \\(did you mean 'pipelines'"
    ):
        validate_file(path)


def test_validate_and_list_commands(ws, tmp_path, notebook, capsys):
    notebook("train", 'snapshot = "wine"\nC = 1.0', "pass")
    write(tmp_path, "pipelines:\n  retrain:\n    on: {snapshot: wine}\n    steps: [{notebook: train.ipynb}]\n")
    ok = cli(capsys, "pipeline", "validate")  # found from the working directory
    assert ok.returncode == 0 and "1 pipeline(s): retrain" in ok.stdout
    listed = json.loads(cli(capsys, "pipeline", "list", "--json").stdout)
    assert listed[0]["trigger"] == "wine" and listed[0]["last_status"] is None
    write(tmp_path, "pipelines:\n  retrain:\n    stepz: []\n")
    bad = cli(capsys, "pipeline", "validate")
    assert bad.returncode == 2 and "line 3: pipelines.retrain.stepz: unknown key 'stepz'" in bad.stderr


@pytest.mark.slow
def test_pipeline_sweeps_selects_and_falls_back_to_staging_when_gated(ws, tmp_path, notebook, wine_frame):
    notebook("train", 'snapshot = "wine"\nC = 1.0', *TRAIN_CELLS)
    write(
        tmp_path,
        """
        pipelines:
          wine-retrain:
            on: {snapshot: wine}
            inputs: {snapshot: wine}
            steps:
              - notebook: train.ipynb
                sweep: {grid: {C: [0.0001, 10.0]}, parallel: 2}
                select: {metric: log_loss, mode: min}
            promote: {model: wine, alias: production, fallback_alias: staging}
    """,
    )
    wb.snapshot("wine", wine_frame)
    wb.set_gates("wine", {"metrics": {"accuracy": {"min": 0.99}}})  # the candidate cannot reach it

    result = run_pipeline("wine-retrain", if_changed=True)  # never ran: counts as changed
    assert result.status == "finished", result.message
    assert result.inputs == {"wine": "wine@1"}
    (step,) = result.steps
    runs = [wb.get_run(r) for r in step.run_ids]
    assert sorted(r.params["C"] for r in runs) == [0.0001, 10.0]
    assert all(r.params["snapshot"] == "wine@1" and r.inputs == ["wine@1"] for r in runs)
    assert all(r.tags["pipeline"] == "wine-retrain" and r.tags["pipeline_run"] == result.pipeline_run for r in runs)
    best = min(runs, key=lambda r: r.metrics["log_loss"])
    assert result.selected_run == step.selected == best.run_id and best.params["C"] == 10.0

    assert result.promoted["alias"] == "staging" and result.promoted["refused"]
    version = wb.get_model_version("wine@staging")
    assert version.run_id == best.run_id and version.aliases == ["staging"]
    moved = wb.audit_log(target="model:wine@staging", action="alias.moved")[-1]
    assert "gates refused production (accuracy = " in moved.reason
    assert moved.details["manual"] is False and moved.details["by"] == "pipeline:wine-retrain"
    finished = wb.audit_log(target="pipeline:wine-retrain")
    assert [e.action for e in finished] == ["pipeline.finished"]
    assert finished[0].details["inputs"] == {"wine": "wine@1"} and "staging" in finished[0].reason

    skipped = run_pipeline("wine-retrain", if_changed=True)  # same snapshot version: nothing to do
    assert skipped.status == "skipped" and "already used" in skipped.message
    assert len(wb.audit_log(target="pipeline:wine-retrain")) == 1


@pytest.mark.slow
def test_trigger_fires_on_a_new_snapshot_version(ws, tmp_path, notebook, wine_frame, capsys):
    notebook("train", 'snapshot = "wine"\nC = 1.0', *TRAIN_CELLS)
    write(
        tmp_path,
        """
        pipelines:
          nightly:
            on: {snapshot: wine}
            inputs: {snapshot: wine}
            steps: [{notebook: train.ipynb, params: {C: 1.0}}]
            promote: {model: wine}
    """,
    )
    assert watch(once=True) == []  # the snapshot does not exist yet
    wb.snapshot("wine", wine_frame.head(100))
    (fired,) = watch(once=True)
    assert fired.status == "finished" and fired.inputs == {"wine": "wine@1"}
    run = wb.get_run(fired.selected_run)
    assert run.inputs == ["wine@1"] and run.tags["pipeline"] == "nightly"
    assert wb.get_model_version("wine@production").run_id == run.run_id
    assert watch(once=True) == []  # already used wine@1
    quiet = cli(capsys, "watch", "--once")
    assert quiet.returncode == 0 and "No trigger fired." in quiet.stdout

    wb.snapshot("wine", wine_frame)  # version 2
    go, why = changed(load_pipeline("nightly"), ws)
    assert go and why.startswith("wine@2 is newer than wine@1")
    listed = json.loads(cli(capsys, "pipeline", "list", "--json").stdout)
    assert listed[0]["last_status"] == "finished" and listed[0]["last_inputs"] == {"wine": "wine@1"}


def test_validate_checks_parameter_types_and_duplicate_keys(tmp_path, notebook):
    """Both used to pass `pipeline validate` and fail (or silently change meaning) at `pipeline run`."""
    notebook("train", 'snapshot = "wine"\nC = 1.0\nn_estimators = 10', "pass")
    typed = write(
        tmp_path,
        """
        pipelines:
          retrain:
            steps:
              - notebook: train.ipynb
                params: {n_estimators: many}
              - notebook: train.ipynb
                sweep: {grid: {C: [0.1, "lots"]}}
                select: {metric: log_loss}
        """,
    )
    with pytest.raises(wb.ValidationError) as caught:
        validate_file(typed)
    problems = caught.value.report
    assert any("line 5: pipelines.retrain.steps[0].params.n_estimators" in p and "expects int" in p
               for p in problems), problems  # fmt: skip
    assert any("steps[1].sweep.grid.C[1]" in p and "expects float" in p for p in problems), problems
    duplicated = write(
        tmp_path,
        """
        pipelines:
          retrain:
            steps:
              - notebook: train.ipynb
                params: {C: 0.5}
            steps:
              - notebook: train.ipynb
        """,
    )
    with pytest.raises(wb.ValidationError, match=r"line 6: pipelines.retrain.steps: duplicate key \(first on line 3"):
        validate_file(duplicated)


@pytest.mark.slow
def test_a_sweep_step_points_at_the_previous_steps_selected_run(ws, tmp_path, notebook):
    """Docs: a step's runs point at the previous step's selected run; sweep steps used to have no parent."""
    notebook("prep", "x = 1", "import workbench as wb\nwb.log_metric('prepared', x)")
    notebook("fit", 'C = 1.0\nupstream_run = ""', "import workbench as wb\nwb.log_metric('loss', abs(C - 2))")
    write(
        tmp_path,
        """
        pipelines:
          two-step:
            steps:
              - notebook: prep.ipynb
              - notebook: fit.ipynb
                sweep: {grid: {C: [1.0, 2.0]}, parallel: 2}
                select: {metric: loss, mode: min}
    """,
    )
    result = run_pipeline("two-step")
    assert result.status == "finished", result.message
    first, second = result.steps
    swept = [wb.get_run(r) for r in second.run_ids]
    assert len(swept) == 2 and all(r.parent_run_id == first.selected for r in swept)
    assert all(r.params["upstream_run"] == first.selected and r.sweep_id == second.sweep_id for r in swept)
    assert wb.get_run(second.selected).params["C"] == 2.0

    # A rerun of a step's run is not part of the pipeline run (nor of the step's sweep).
    again = wb.rerun(second.selected)
    assert again.tags["rerun_of"] == second.selected and again.parent_run_id == second.selected
    assert not {"pipeline", "pipeline_run", "pipeline_step", "sweep"} & set(again.tags)
    members = wb.runs(filter=f"tags.pipeline_run = '{result.pipeline_run}'")
    assert sorted(members["run_id"]) == sorted([first.selected, *second.run_ids])

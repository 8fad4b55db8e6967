"""Reruns that would silently give a wrong answer: a run that never executed (nothing pinned),
a rerun that passes for a member of the original's sweep, a notebook file that is gone."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from conftest import run_cli_in_process

import workbench as wb
from workbench.runs.launch import ReproducibilityWarning, cancel_run
from workbench.runs.runner import execute, prepare, queue, reopen

READS = "import workbench as wb\nrows = len(wb.load_snapshot('tiny'))\nwb.log_metric('rows', rows)\n"


def queued_run(ws, nb) -> str:
    """A run that was queued and never started (the state a cancel or a lost scheduler leaves)."""
    return queue(ws, prepare(nb, {}), experiment="never").run_id


def test_a_run_that_never_executed_is_refused_not_rerun_on_the_latest_data(ws, notebook, capsys):
    nb = notebook("reads", "x = 1", READS)
    killed = queued_run(ws, nb)
    cancel_run(killed, ws)
    prepared, record, _pins = reopen(ws, killed)
    assert execute(ws, prepared, record) == "killed"  # cancelled before a kernel started
    still_queued = queued_run(ws, nb)

    with pytest.raises(wb.ValidationError, match=rf"Run {killed} never executed \(status killed, never started\)"):
        wb.rerun(killed)
    with pytest.raises(wb.ValidationError, match=r"never executed \(status queued, not started yet\)"):
        wb.rerun(still_queued)
    refused = run_cli_in_process(capsys, "rerun", killed)
    assert refused.returncode == 2 and "nothing to reproduce" in refused.stderr
    assert "workbench run" in refused.stderr and "Traceback" not in refused.stderr
    assert sorted(wb.runs()["run_id"]) == sorted([killed, still_queued])  # nothing new was recorded


@pytest.mark.slow
def test_a_run_that_started_and_failed_still_reruns_on_its_recorded_inputs(ws, notebook):
    wb.snapshot("tiny", pd.DataFrame({"a": [1, 2, 3]}))
    nb = notebook("fails", "x = 1", READS, "raise RuntimeError('late failure')")
    original = wb.run(nb)
    assert original.status == "failed" and original.inputs == ["tiny@1"]
    wb.snapshot("tiny", pd.DataFrame({"a": [1]}))

    again = wb.rerun(original.run_id)
    assert again.status == "failed" and again.inputs == ["tiny@1"] and again.metrics["rows"] == 3
    assert again.parent_run_id == original.run_id


@pytest.mark.slow
def test_a_rerun_of_a_sweep_run_is_not_a_member_of_the_sweep(ws, notebook):
    nb = notebook("square", "x = 0", "import workbench as wb\nwb.log_metric('sq', x * x)")
    swept = wb.sweep(nb, {"x": [2, 3]}, parallel=1, tags={"team": "ml"})
    member = wb.get_run(swept.run_ids[0])
    assert member.tags["sweep"] == swept.sweep_id

    again = wb.rerun(member.run_id)
    assert again.status == "finished" and again.metrics == member.metrics
    assert again.sweep_id is None and "sweep" not in again.tags
    assert again.tags["rerun_of"] == member.run_id and again.tags["team"] == "ml"
    assert again.parent_run_id == member.run_id
    by_tag = wb.runs(filter=f"tags.sweep = '{swept.sweep_id}'")
    by_id = wb.runs(filter=f"sweep_id = '{swept.sweep_id}'")
    assert sorted(by_tag["run_id"]) == sorted(by_id["run_id"]) == sorted(swept.run_ids)


@pytest.mark.slow
def test_a_rerun_says_when_the_notebook_file_is_gone(ws, notebook):
    nb = notebook("gone", "x = 2", "import workbench as wb\nwb.log_metric('twice', x * 2)")
    original = wb.run(nb)
    nb.unlink()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = wb.rerun(original.run_id)

    messages = [str(w.message) for w in caught if issubclass(w.category, ReproducibilityWarning)]
    assert any(f"notebook file {nb} no longer exists; rerunning the stored copy" in m for m in messages), messages
    assert again.status == "finished" and again.metrics == {"twice": 4.0}
    assert again.notebook_hash == original.notebook_hash

"""kill -9 of a sweep coordinator mid-sweep: every run ends final and `sweep --resume` finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from conftest import VENV_BIN

import workbench as wb

SLOW_SCORE = "import time\nimport workbench as wb\ntime.sleep(1.5)\nwb.log_metric('score', x * 10)\n"


def _wait_for_runs(predicate, what: str, timeout: float = 120.0):
    """The runs table once `predicate(table)` holds (each read also reaps runs whose process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table = wb.runs()
        if len(table) and predicate(table):
            return table
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {wb.runs()[['run_id', 'status']].values.tolist()}")


@pytest.mark.slow
def test_a_killed_sweep_is_resumed_without_losing_or_repeating_work(ws, notebook, monkeypatch, cli):
    monkeypatch.setenv("WORKBENCH_STALE_AFTER", "2")  # this process reads, so it reaps the killed run
    nb = notebook("slow", "x = 0", SLOW_SCORE)
    env = dict(os.environ, WORKBENCH_HOME=str(ws.root), WORKBENCH_STALE_AFTER="2")
    args = [str(VENV_BIN / "workbench"), "sweep", str(nb), "--grid", "x=1,2,3,4,5", "-j", "1"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # The kill must land while a run is executing (one finished, the next one running), or
        # there is nothing for the reaper and for --resume to recover.
        at_kill = _wait_for_runs(lambda t: (t.status == "finished").any() and (t.status == "running").any(),
                                 "one run finished and the next one running")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (cut_short,) = at_kill.loc[at_kill.status == "running", "run_id"]  # -j 1: one run at a time

    before = _wait_for_runs(lambda t: not t.status.isin(["running", "queued"]).any(),
                            "the runs of the dead coordinator to be reaped")
    assert set(before["status"]) == {"finished", "killed"}
    killed_before = before[before.status == "killed"]
    assert cut_short in set(killed_before["run_id"])  # the kill landed mid-run: the run ended killed
    assert "stopped without finishing" in wb.get_run(cut_short).error["evalue"]
    assert len(killed_before) >= 2  # and the runs the dead coordinator never started
    x_cut_short = int(before.loc[before.run_id == cut_short, "params.x"].iloc[0])
    sweep_id = before["sweep_id"].iloc[0]
    done = before[before.status == "finished"]
    finished_before = dict(zip(done["params.x"], done["run_id"], strict=True))

    resumed = cli("sweep", "--resume", sweep_id, "-j", "2", "--json", check=True)
    assert '"sweep_id"' in resumed.stdout
    after = wb.runs(filter=f"sweep_id = '{sweep_id}'")
    finished = after[after.status == "finished"]
    assert sorted(finished["params.x"]) == [1, 2, 3, 4, 5]  # each parameter set finished exactly once
    for x, run_id in finished_before.items():  # work done before the kill is kept, not repeated
        assert finished.loc[finished["params.x"] == x, "run_id"].tolist() == [run_id]
    assert set(after["status"]) <= {"finished", "killed"}  # nothing left queued or running
    killed = after[after.status == "killed"]
    assert len(killed) == len(after) - 5 == len(killed_before)  # each interrupted run was re-run once
    # The run the kill cut short was finished by resume: a new run with its parameters replaces it.
    replacement = finished[finished["parent_run_id"] == cut_short]
    assert replacement["params.x"].tolist() == [x_cut_short]
    assert wb.get_run(replacement["run_id"].iloc[0]).metrics == {"score": x_cut_short * 10}
    assert set(killed["run_id"]) <= set(after["parent_run_id"].dropna())  # every killed run was re-run

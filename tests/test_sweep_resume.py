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


@pytest.mark.slow
def test_a_killed_sweep_is_resumed_without_losing_or_repeating_work(ws, notebook, monkeypatch, cli):
    monkeypatch.setenv("WORKBENCH_STALE_AFTER", "2")
    nb = notebook("slow", "x = 0", SLOW_SCORE)
    env = dict(os.environ, WORKBENCH_HOME=str(ws.root), WORKBENCH_STALE_AFTER="2")
    args = [str(VENV_BIN / "workbench"), "sweep", str(nb), "--grid", "x=1,2,3,4,5", "-j", "1"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = wb.runs(filter="status = 'finished'")
        if len(done) >= 1:
            break
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)  # let heartbeats go stale

    before = wb.runs()
    assert set(before["status"]) <= {"finished", "killed", "queued", "running"}
    sweep_id = before["sweep_id"].iloc[0]
    finished_before = set(before.loc[before.status == "finished", "params.x"])

    resumed = cli("sweep", "--resume", sweep_id, "-j", "2", "--json", check=True)
    assert '"sweep_id"' in resumed.stdout
    after = wb.runs(filter=f"sweep_id = '{sweep_id}'")
    finished = after[after.status == "finished"]
    assert sorted(finished["params.x"]) == [1, 2, 3, 4, 5]  # each parameter set finished exactly once
    assert finished_before <= set(finished["params.x"])
    assert set(after["status"]) <= {"finished", "killed"}  # nothing left queued or running
    assert after[after.status == "killed"]["run_id"].isin(after["parent_run_id"]).all()

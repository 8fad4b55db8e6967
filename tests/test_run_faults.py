"""Runs that die: kill -9 of the runner or the kernel, cancel. They end final and keep their logs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import VENV_BIN

import workbench as wb
from workbench.runs.events import EVENTS_FILE, read_events, run_dir

SLOW = (
    "import os, time, pathlib\nimport workbench as wb\n"
    "pathlib.Path(marker).write_text(str(os.getpid()))\n"
    "for i in range(3):\n    wb.log_metric('progress', i, step=i)\n"
    "time.sleep(600)"
)


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _final_run(run_id: str, timeout: float = 60.0):
    return _wait_for(lambda: (r := wb.get_run(run_id)).status in ("finished", "failed", "killed") and r,
                     timeout, f"run {run_id} to end")  # fmt: skip


def _start_cli_run(ws, nb: Path, marker: Path) -> subprocess.Popen:
    env = dict(os.environ, WORKBENCH_HOME=str(ws.root))
    args = [str(VENV_BIN / "workbench"), "run", str(nb), "-p", "marker", str(marker), "--json"]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _the_run_id(ws) -> str:
    return _wait_for(lambda: [p.name for p in ws.runs_dir.iterdir()] if ws.runs_dir.is_dir() else None,
                     what="the run folder")[0]  # fmt: skip


def _wait_for_logged_progress(ws, run_id: str) -> None:
    """Until the run's event file holds the three `progress` points the kernel logs before it sleeps.

    They are written by the kernel's background flusher (every 0.5 s): only once they are on disk
    does a kill test that they are kept, rather than that they were never written.
    """
    events = run_dir(ws, run_id) / EVENTS_FILE

    def logged() -> bool:
        steps = {e.get("step") for e in read_events(events) if e.get("t") == "metric" and e.get("key") == "progress"}
        return steps >= {0, 1, 2}

    _wait_for(logged, what="the progress metrics in the event file")


@pytest.mark.slow
def test_kill_9_of_the_runner_marks_the_run_killed_and_keeps_its_metrics(ws, notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_STALE_AFTER", "3")
    marker = tmp_path / "kernel.pid"
    proc = _start_cli_run(ws, notebook("slow", "marker = ''", SLOW), marker)
    _wait_for(marker.exists, what="the kernel to start")
    run_id = _the_run_id(ws)
    _wait_for_logged_progress(ws, run_id)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, as an OOM kill or a closed laptop would
    proc.wait()

    run = _final_run(run_id)
    assert run.status == "killed"
    assert "stopped without finishing" in run.error["evalue"]
    assert run.metrics == {"progress": 2}  # what it logged before the kill is kept, in the catalog
    assert wb.metric_history(run_id, "progress")["value"].tolist() == [0, 1, 2]


@pytest.mark.slow
def test_kill_9_of_the_kernel_fails_the_run_with_a_clear_error(ws, notebook, tmp_path):
    marker = tmp_path / "kernel.pid"
    proc = _start_cli_run(ws, notebook("slow", "marker = ''", SLOW), marker)
    pid = int(_wait_for(lambda: marker.exists() and marker.read_text(), what="the kernel pid"))
    run_id = _the_run_id(ws)
    _wait_for_logged_progress(ws, run_id)
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) == 1

    run = wb.get_run(run_id)
    assert run.status == "failed"
    assert "DeadKernel" in run.error["ename"] or "died" in run.error["evalue"].lower()
    assert wb.metric_history(run_id, "progress")["value"].tolist() == [0, 1, 2]


@pytest.mark.slow
def test_cancel_stops_a_background_run(ws, notebook, tmp_path):
    marker = tmp_path / "kernel.pid"
    run = wb.run(notebook("slow", "marker = ''", SLOW), {"marker": str(marker)}, background=True)
    assert run.status in ("queued", "running")
    _wait_for(marker.exists, what="the kernel to start")
    assert wb.cancel_run(run.run_id) is True

    ended = _final_run(run.run_id)
    assert ended.status == "killed" and ended.error["ename"] == "Cancelled"
    assert ended.output_blob  # the executed notebook up to the cancel is kept
    assert wb.cancel_run(run.run_id) is False

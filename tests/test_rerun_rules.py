"""Reruns that would silently give a wrong answer: a run that never executed (nothing pinned),
a rerun that passes for a member of the original's sweep, a notebook file that is gone, code or
packages that changed since the original ran."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli_in_process, write_notebook

import workbench as wb
from workbench.runs import environment
from workbench.runs.events import EVENTS_FILE, run_dir
from workbench.runs.launch import ReproducibilityWarning, cancel_run
from workbench.runs.rebuild import rebuild_catalog
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


def git(repo: Path, *args: str) -> str:
    """A git command in `repo` as a fixed author (no user config needed, nothing signed)."""
    command = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def record_package_version(ws, run_id: str, package: str, version: str) -> None:
    """Rewrite the package version in run `run_id`'s recorded environment, as if the run had executed
    with `version` installed: its start event, then the catalog rebuilt from the run folders (the
    catalog indexes an event file by what was appended to it, so an edit in place needs a rebuild)."""
    path = run_dir(ws, run_id) / EVENTS_FILE
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for event in events:
        if event.get("t") == "start":
            event["packages"][package] = version
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    assert rebuild_catalog(ws)["runs_recovered"] == 1


def committed_notebook(repo: Path, name: str, parameters: str, *cells: str) -> Path:
    """A notebook committed as the only file of a new git repository `repo`."""
    repo.mkdir()
    git(repo, "init", "-q")
    nb = write_notebook(repo / name, parameters, *cells)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", "the notebook")
    return nb


def reproducibility_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ReproducibilityWarning)]


@pytest.mark.slow
def test_a_rerun_warns_when_the_commit_and_the_packages_changed_since_the_original(ws, tmp_path, capsys):
    repo = tmp_path / "project"
    nb = committed_notebook(repo, "square.ipynb", "x = 3", "import workbench as wb\nwb.log_metric('sq', x * x)")
    old_commit = git(repo, "rev-parse", "HEAD")
    original = wb.run(nb)
    assert original.status == "finished" and original.git_commit == old_commit

    (repo / "helpers.py").write_text("SCALE = 2\n")  # the code moves on; the notebook itself does not change
    git(repo, "add", "helpers.py")
    git(repo, "commit", "-q", "-m", "a helper")
    new_commit = git(repo, "rev-parse", "HEAD")
    installed = environment.packages()["pandas"]
    record_package_version(ws, original.run_id, "pandas", "1.0.0")
    assert wb.get_run(original.run_id).packages["pandas"] == "1.0.0"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = wb.rerun(original.run_id)

    messages = reproducibility_warnings(caught)
    code = f"Code is at commit {new_commit[:10]}, the original ran at {old_commit[:10]}."
    packages = f"Package versions differ from the original run: pandas 1.0.0 -> {installed}"
    assert messages == [code, packages]  # nothing about the notebook: its content is unchanged
    assert again.status == "finished" and again.metrics == {"sq": 9.0} and again.git_commit == new_commit

    shown = run_cli_in_process(capsys, "rerun", original.run_id)
    assert shown.returncode == 0, shown
    assert f"Warning: {code}" in shown.stderr and f"Warning: {packages}" in shown.stderr


@pytest.mark.slow
def test_a_rerun_on_the_same_commit_and_packages_does_not_warn(ws, tmp_path):
    body = "import workbench as wb\nwb.log_metric('x', x)"
    nb = committed_notebook(tmp_path / "project", "same.ipynb", "x = 1", body)
    original = wb.run(nb)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = wb.rerun(original.run_id)

    assert reproducibility_warnings(caught) == []
    assert again.git_commit == original.git_commit and again.packages == original.packages


@pytest.mark.slow
def test_background_rerun_returns_queued_and_keeps_the_pins(ws, notebook, capsys):
    """`workbench rerun --background` (and the lab's Rerun) returns at once; the detached worker
    still reads the snapshot version the original read, not the latest."""
    import time

    wb.snapshot("tiny", pd.DataFrame({"a": [1, 2, 3]}))
    original = wb.run(notebook("reads", "x = 1", READS))
    wb.snapshot("tiny", pd.DataFrame({"a": [1]}))
    shown = run_cli_in_process(capsys, "rerun", original.run_id, "--background", "--json")
    assert shown.returncode == 0, shown.stderr
    queued = json.loads(shown.stdout)
    assert queued["status"] in ("queued", "running") and queued["parent_run_id"] == original.run_id
    deadline = time.monotonic() + 120
    while (again := wb.get_run(queued["run_id"])).status not in ("finished", "failed", "killed"):
        assert time.monotonic() < deadline, again.status
        time.sleep(0.5)
    assert again.status == "finished" and again.inputs == ["tiny@1"] and again.metrics["rows"] == 3

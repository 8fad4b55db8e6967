"""Reading runs from a team server through the unchanged Python API (issue 18: one interface, two
implementations). A client process with `WORKBENCH_URL`/`WORKBENCH_TOKEN` and no workspace calls
`wb.runs()`, `wb.get_run`, `wb.metric_history`, `wb.load_artifact`, ... and must get exactly what
the same calls give on the server's workspace folder: same columns, dtypes and values.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from model_fixtures import train_run
from test_team_logging import client_env
from test_team_server import add_user, start_server

import workbench as wb

pytestmark = pytest.mark.slow

# The reads compared, by name: each evaluated on the server's folder (reference) and from a client.
READS = {
    "runs": "wb.runs()",
    "runs_min_max": "wb.runs(include_min_max=True, order_by='metrics.loss', filter='params.C >= 1')",
    "runs_limit": "wb.runs(experiment='wine', limit=1)",
    "runs_empty": "wb.runs(filter='metrics.loss > 1000')",
    "compare": "wb.runs.query.runs_by_id([ids['curve'], ids['strong']], include_min_max=True)",
    "experiments": "wb.runs.query.experiments_summary()",
    "run": "wb.get_run(ids['curve']).to_dict()",
    "history": "wb.metric_history([ids['curve'], ids['strong']], 'loss')",
    "history_none": "wb.metric_history(ids['strong'], 'no-such-metric')",
    "text": "wb.load_artifact(ids['curve'], 'notes.txt')",
    "model": "type(wb.load_artifact(ids['strong'], 'wine')).__name__",
}

CLIENT = r"""
import pickle, sys
import workbench as wb
ids = pickle.load(open(sys.argv[1], "rb"))
reads = pickle.load(open(sys.argv[2], "rb"))
out = {name: eval(code) for name, code in reads.items()}
out["artifact_path_is_cached"] = str(wb.artifact_path(ids['curve'], 'notes.txt')).startswith(sys.argv[4])
pickle.dump(out, open(sys.argv[3], "wb"))
"""


def curve_run() -> str:
    wb.set_experiment("wine")
    wb.log_param("C", 3)
    wb.log_param("solver", "lbfgs")
    for step in range(5):
        wb.log_metric("loss", 1.0 / (step + 1), step=step)
    wb.set_tag("stage", "curve")
    wb.log_text("a curve", "notes.txt")
    run_id = wb.active_run_id()
    wb.end_run()
    return run_id


@pytest.fixture(scope="module")
def served(tmp_path_factory, wine_frame):
    """A workspace with runs, what the reads give on it locally, then a server holding it."""
    from workbench.workspace import init_workspace, use_workspace

    root = tmp_path_factory.mktemp("store-runs")
    home = root / ".workbench"
    use_workspace(init_workspace(home))
    try:
        wb.snapshot("wine", wine_frame)
        ids = {"weak": train_run(C=0.001), "strong": train_run(C=10.0), "curve": curve_run()}
        expected = {name: eval(code, {"wb": wb, "ids": ids}) for name, code in READS.items()}
    finally:
        use_workspace(None)
    token = add_user(home, "vera", "viewer")
    server = start_server(home)
    yield root, server, token, ids, expected
    server.stop()


def as_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, token: str) -> None:
    """This test process as a client machine of the server: its token, its own cache and config."""
    for name, value in client_env(tmp_path, url, token).items():
        if name.startswith(("WORKBENCH_", "XDG_")):
            monkeypatch.setenv(name, value)


def test_a_client_reads_runs_exactly_as_the_folder_gives_them(served, tmp_path):
    root, server, token, ids, expected = served
    files = [tmp_path / name for name in ("ids.pkl", "reads.pkl", "out.pkl")]
    files[0].write_bytes(pickle.dumps(ids))
    files[1].write_bytes(pickle.dumps(READS))
    env = client_env(tmp_path, server.url, token)
    proc = subprocess.run([sys.executable, "-c", CLIENT, *map(str, files), str(tmp_path / "cache")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = pickle.loads(files[2].read_bytes())
    assert not (tmp_path / ".workbench").exists()  # nothing was created locally
    for name in READS:
        if isinstance(expected[name], pd.DataFrame):
            pd.testing.assert_frame_equal(got[name], expected[name], check_index_type=False, obj=name)
        else:
            assert got[name] == expected[name], name
    assert got["model"] == "Pipeline"
    assert got["artifact_path_is_cached"]
    assert len(expected["history"]) == 5 and set(expected["runs"]["run_id"]) == set(ids.values())


def test_errors_from_the_server_read_as_local_ones(served, tmp_path, monkeypatch):
    root, server, token, ids, _ = served
    from workbench.errors import NotFoundError, ValidationError
    from workbench.remote import dispatch

    as_client(monkeypatch, tmp_path, server.url, token)
    assert dispatch.remote_store() is not None
    with pytest.raises(NotFoundError, match="No run 20200101-000000-deadbeef"):
        wb.get_run("20200101-000000-deadbeef")
    with pytest.raises(ValidationError, match="metrics.loss >"):
        wb.runs(filter="metrics.loss >")
    with pytest.raises(wb.WorkbenchError, match="Invalid run id"):
        wb.get_run("../../etc/passwd")
    with pytest.raises(NotFoundError, match="no artifact"):
        wb.load_artifact(ids["curve"], "missing.txt")
    monkeypatch.setenv("WORKBENCH_TOKEN", "wbt_" + "x" * 40)
    with pytest.raises(wb.WorkbenchError, match="refused the token"):
        wb.runs()


def test_a_corrupted_cached_artifact_is_downloaded_again(served, tmp_path, monkeypatch):
    root, server, token, ids, _ = served
    as_client(monkeypatch, tmp_path, server.url, token)
    path = wb.artifact_path(ids["curve"], "notes.txt")
    assert path.read_text() == "a curve" and oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("tampered")
    assert wb.load_artifact(ids["curve"], "notes.txt") == "a curve"
    assert Path(wb.artifact_path(ids["curve"], "notes.txt")).read_text() == "a curve"


def test_compare_and_the_cli_read_from_the_server(served, tmp_path):
    root, server, token, ids, _ = served
    env = client_env(tmp_path, server.url, token)
    code = ("import workbench as wb, sys; c = wb.compare([sys.argv[1], sys.argv[2]]); "
            "print(c.metric, sorted(c.figures))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, ids["curve"], ids["strong"]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "loss" and "step_curves" in proc.stdout
    workbench = str(Path(sys.executable).parent / "workbench")
    listed = subprocess.run([workbench, "runs", "list", "--json"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert {ids["curve"], ids["weak"], ids["strong"]} <= {row["run_id"] for row in json.loads(listed.stdout)}
    shown = subprocess.run([workbench, "runs", "show", ids["curve"], "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["params"] == {"C": 3, "solver": "lbfgs"}
    assert not (tmp_path / ".workbench").exists()


def test_the_runs_widget_lists_the_servers_runs(served, tmp_path, monkeypatch):
    root, server, token, ids, _ = served
    from workbench.widgets import RunTable

    as_client(monkeypatch, tmp_path, server.url, token)
    monkeypatch.chdir(tmp_path)
    table = RunTable()
    assert set(table.shown_ids) == set(ids.values())
    table.select([ids["curve"], ids["strong"]])
    table.show_comparison()
    assert table.comparison is not None and set(table.comparison.run_ids) == {ids["curve"], ids["strong"]}
    assert not (tmp_path / ".workbench").exists()

"""The example notebooks in notebooks/ run top to bottom (nbval), in order, on one workspace, and
leave in it what they say they do: the data, the tracked model, the sweep, the served model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.slow
def test_example_notebooks_run_in_order(tmp_path, monkeypatch):
    assert NOTEBOOKS, "no example notebooks found"
    home = tmp_path / ".workbench"
    env = dict(os.environ, WORKBENCH_HOME=str(home), WORKBENCH_DEMO_FAST="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), *map(str, NOTEBOOKS)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    # nbval --nbval-lax only checks that cells run; what they did is checked in the workspace.
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    _check_what_the_notebooks_recorded(home)


def _check_what_the_notebooks_recorded(home: Path) -> None:
    import workbench as wb
    from workbench.serving.predlog import predictions_dir
    from workbench.workspace import open_workspace, use_workspace

    ws = open_workspace(home)
    use_workspace(ws)
    try:
        # 01: two deliveries of the wine data; the bad batch registered nothing.
        assert (wb.get_snapshot("wine@1").row_count, wb.get_snapshot("wine").ref) == (150, "wine@2")
        assert wb.get_snapshot("wine@2").row_count == 178

        # 02, run by hand: one interactive run that logged a good model and read wine@2.
        (trained,) = wb.runs(experiment="wine-classifier")["run_id"]
        run = wb.get_run(trained)
        assert run.metrics["accuracy"] > 0.85 and run.metrics["log_loss"] < 0.5, run.metrics
        assert run.inputs == ["wine@2"]
        assert {"wine-classifier", "feature_importance"} <= {a.name for a in run.artifacts}

        # 03: a sweep of 02 over the quick grid, every run finished, compared in a report.
        sweep = wb.runs(experiment="wine-sweep")
        assert len(sweep) == 4 and set(sweep["status"]) == {"finished"} and sweep["sweep_id"].nunique() == 1
        grid = sorted(zip(sweep["params.learning_rate"], sweep["params.max_depth"], strict=True))
        assert grid == [(0.05, 1), (0.05, 3), (0.3, 1), (0.3, 3)]
        assert (sweep["metrics.accuracy"] > 0.8).all()
        assert (ws.root / "reports" / "sweep_report.html").is_file()

        # 04: the sweep's best run (lowest log loss) promoted through the gate, served, and its
        # shifted traffic flagged as drift.
        best = sweep.sort_values("metrics.log_loss")["run_id"].iloc[0]
        version = wb.get_model_version("wine-classifier@production")
        assert (version.version, version.run_id) == (1, best)
        served = [e.action for e in wb.audit_log(target="model:wine-classifier@production")
                  if e.action.startswith("serving.")]  # fmt: skip
        assert served == ["serving.started", "serving.stopped"]
        logged = sum(len(p.read_text().splitlines()) for p in predictions_dir(ws, "wine-classifier").glob("*.jsonl"))
        assert logged == 3 + 2 * 178  # the three first rows, then the data as trained on and shifted
        assert {"alcohol", "proline"} <= set(wb.drift_report("wine-classifier").drifted)
    finally:
        use_workspace(None)

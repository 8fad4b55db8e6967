"""Tracked runs vs bare papermill, sweeps vs sequential papermill, metric logging vs MLflow.

Run a single trial: `python -m benchmarks.bench_runs CASE WORKDIR COUNT`; only the metric logging
comparisons: `python -m benchmarks.bench_runs logging [REPEATS] [--no-loop]` (--no-loop: without
MLflow's log_metric loop, which takes about a minute a trial).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Comparison, interleave, report_trial, run_trial

MODULE = "benchmarks.bench_runs"

TRAIN_CELL = """
import pandas as pd
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
X, y = load_wine(return_X_y=True, as_frame=True)
score = LogisticRegression(C=C, max_iter=2000).fit(X, y).score(X, y)
"""


def mlflow_log_batch(run_id: str, n: int) -> None:
    """`n` step metrics into MLflow run `run_id` with `log_batch`, 1,000 points a call (its limit)."""
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client = mlflow.tracking.MlflowClient()
    metrics = [Metric("loss", 1.0 / (step + 1), now, step) for step in range(n)]
    for chunk in range(0, n, 1000):
        client.log_batch(run_id, metrics=metrics[chunk : chunk + 1000])


def write_notebook(folder: Path) -> Path:
    """The small scikit-learn notebook both sides execute (a `parameters` cell + training)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("C = 1.0", metadata={"tags": ["parameters"]}), new_code_cell(TRAIN_CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "train.ipynb"
    nbformat.write(nb, path)
    return path


def _workspace(work: Path):
    from workbench.workspace import init_workspace, use_workspace

    ws = init_workspace(work / ".workbench")
    use_workspace(ws)
    return ws


def trial(case: str, workdir: str, count: str) -> None:
    work = Path(workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    notebook = write_notebook(work)
    n = int(count)
    # Imports happen before the clock: both sides are measured from a warm process.
    import papermill

    import workbench as wb
    from workbench.sweeps import sweep

    extra: dict = {}
    if case in ("tracked_run", "sweep_parallel", "sweep_serial", "log_metrics"):
        ws = _workspace(work)
    start = time.perf_counter()
    if case == "tracked_run":
        for i in range(n):
            assert wb.run(notebook, {"C": 1.0 + i}, ws=ws).status == "finished"
    elif case == "bare_papermill":
        for i in range(n):
            papermill.execute_notebook(str(notebook), str(work / f"out{i}.ipynb"), parameters={"C": 1.0 + i},
                                       progress_bar=False)  # fmt: skip
    elif case in ("sweep_parallel", "sweep_serial"):
        parallel = 2 if case == "sweep_parallel" else 1
        result = sweep(notebook, {"C": [1.0 + i for i in range(n)]}, parallel=parallel, ws=ws)
        assert not result.failed, result.statuses
    elif case == "log_metrics":
        for step in range(n):
            wb.log_metric("loss", 1.0 / (step + 1), step=step)
        run_id = wb.active_run_id()
        wb.end_run()
        extra["logged"] = len(wb.metric_history(run_id, "loss"))
    elif case in ("mlflow_loop", "mlflow_batch"):
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
        mlflow.set_experiment("bench")
        start = time.perf_counter()  # after MLflow's one-time database setup, in its favour
        with mlflow.start_run() as active:
            if case == "mlflow_loop":
                for step in range(n):
                    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            else:
                mlflow_log_batch(active.info.run_id, n)
    else:
        raise SystemExit(f"unknown case {case}")
    seconds = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    report_trial(seconds, **extra)


def run(repeats: int = 3, runs: int = 4, sweep_runs: int = 16, metrics: int = 10_000) -> list[Comparison]:
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-runs-"))
    work = str(scratch / "work")
    try:
        single = interleave(
            {
                "workbench run": lambda: run_trial(MODULE, "tracked_run", [work, str(runs)]),
                "papermill.execute_notebook": lambda: run_trial(MODULE, "bare_papermill", [work, str(runs)]),
            },
            repeats,
        )
        sweeps = interleave(
            {
                "workbench sweep --parallel 2": lambda: run_trial(MODULE, "sweep_parallel", [work, str(sweep_runs)]),
                "workbench sweep --parallel 1": lambda: run_trial(MODULE, "sweep_serial", [work, str(sweep_runs)]),
                "sequential papermill": lambda: run_trial(MODULE, "bare_papermill", [work, str(sweep_runs)]),
            },
            max(1, repeats - 1),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [
        Comparison(f"tracked run vs bare papermill ({runs} runs, sklearn notebook)", single["workbench run"],
                   single["papermill.execute_notebook"], target=0.5,
                   note="fork-server kernels (default); issue 3 asked <= 1.10, issue 10 <= 0.5"),
        Comparison(f"sweep of {sweep_runs}, 2 parallel vs sequential papermill", sweeps["workbench sweep --parallel 2"],
                   sweeps["sequential papermill"], target=0.2,
                   note="issue 3 asked <= 0.6, issue 10 <= 0.2. Before (2026-11-27, same machine): 11.0 s vs 42.7 s, "
                        "0.26x; profiled (py-spy): fixed 0.2 s waits in jupyter_client's readiness check and "
                        "socket reconnects, a full gc.collect() at each kernel exit, catalog writes between a "
                        "worker's runs and an occasional 3 s exit deadlock in forked kernels (all fixed)"),
        Comparison(f"sweep of {sweep_runs}, parallel 2 vs parallel 1", sweeps["workbench sweep --parallel 2"],
                   sweeps["workbench sweep --parallel 1"], target=1.0, note="parallel must never be slower"),
    ] + run_logging(repeats, metrics)  # fmt: skip


def run_logging(repeats: int = 3, metrics: int = 10_000, mlflow_loop: bool = True) -> list[Comparison]:
    """Metric logging alone: `wb.log_metric` in a loop (flush and indexing in the catalog included,
    checked by `wb.metric_history`) against MLflow's `log_batch` and, unless `mlflow_loop` is False
    (it takes about a minute a trial), MLflow's own `log_metric` loop, measured side by side."""
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-logging-"))
    work = str(scratch / "work")
    contenders = {
        "wb.log_metric": lambda: run_trial(MODULE, "log_metrics", [work, str(metrics)]),
        "mlflow log_batch": lambda: run_trial(MODULE, "mlflow_batch", [work, str(metrics)]),
    }
    if mlflow_loop:
        contenders["mlflow.log_metric loop"] = lambda: run_trial(MODULE, "mlflow_loop", [work, str(metrics)])
    try:
        logging = interleave(contenders, repeats)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    comparisons = []
    if mlflow_loop:
        comparisons.append(
            Comparison(f"log {metrics:,} step metrics vs MLflow log_metric loop", logging["wb.log_metric"],
                       logging["mlflow.log_metric loop"], target=0.1,
                       note="target: at least 10x faster (ratio <= 0.1); includes flush and indexing in the catalog")
        )  # fmt: skip
    comparisons.append(
        Comparison(f"log {metrics:,} step metrics vs MLflow log_batch", logging["wb.log_metric"],
                   logging["mlflow log_batch"], target=0.33,
                   note="issue 21: at least 3x faster (ratio <= 0.33), flush and indexing in the catalog included. "
                        "Before (2026-11-27, same machine): 0.413 s vs 0.979 s, 0.42x; profiled (cProfile): at the "
                        "run's start every installed package's metadata parsed twice by the email parser, two git "
                        "processes and IPython imported outside a notebook; per point a dict, json.dumps and "
                        "datetime.isoformat; when indexing one json.loads per line, row tuples into pandas and a "
                        "pandas scan in each of the transaction's statements (all fixed)")
    )  # fmt: skip
    return comparisons


def main(argv: list[str]) -> None:
    """`logging [REPEATS] [--no-loop]`: only the metric logging comparisons, printed as a table;
    otherwise one trial: `CASE WORKDIR COUNT`."""
    if argv and argv[0] == "logging":
        from datetime import datetime, timezone

        from benchmarks.harness import markdown_table

        numbers = [int(a) for a in argv[1:] if a.isdigit()]
        comparisons = run_logging(numbers[0] if numbers else 3, mlflow_loop="--no-loop" not in argv)
        print(markdown_table(comparisons, {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}))
    else:
        trial(*argv[:3])


if __name__ == "__main__":
    main(sys.argv[1:])

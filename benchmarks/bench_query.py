"""Searching runs: `workbench.runs.query.runs()` vs `mlflow.search_runs` on the same synthetic runs.

Both stores hold the same N runs x 10 params x 10 metrics: a Workbench catalog filled with bulk
SQL, and an MLflow sqlite tracking store whose schema MLflow creates itself and whose rows are
then bulk-inserted with sqlite3 (logging 100,000 runs through `MlflowClient.log_batch` would take
hours; the rows written are the ones log_batch writes: runs, params, metrics, latest_metrics).
The query is a filtered, sorted top-1000: the typical "best runs where ..." question.

Run a single trial: `python -m benchmarks.bench_query CASE SCRATCH_DIR`.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Comparison, Series, Trial, interleave, report_trial, run_trial

MODULE = "benchmarks.bench_query"
PARAMS = 10
METRICS = 10
LIMIT = 1000
#: In-process repetitions per trial after one untimed warm-up call; the trial reports their median.
#: Fewer when the calls are slow (MLflow needs about a minute per call at 100k runs).
CALLS = 5
CALL_BUDGET_S = 10.0
WB_FILTER = "metrics.m0 < 0.5 and params.p1 >= 3"
#: MLflow compares params as strings and only with = != LIKE ILIKE (no >=): params are the digits
#: 0-9, so "p1 >= 3" is written as "not 0, 1 or 2".
MLFLOW_FILTER = "metrics.m0 < 0.5 and params.p1 != '0' and params.p1 != '1' and params.p1 != '2'"
ORDER = "metrics.m1"
PRIME = 1_000_003  # metric values (i * 7919 + j * 104729) % PRIME / PRIME: distinct per metric, no ties
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def _param(i: int, j: int) -> int:
    return (i * 7 + j * 3) % 10


def _metric(i: int, j: int) -> float:
    return ((i * 7919 + j * 104729) % PRIME) / PRIME


def build_workbench(folder: Path, runs: int) -> None:
    """A workspace whose catalog holds `runs` runs, written with INSERT ... SELECT FROM range()."""
    from workbench.catalog import transaction
    from workbench.workspace import init_workspace

    ws = init_workspace(folder / ".workbench")
    run_id = "printf('20240101-000000-%08x', i)"
    with transaction(ws) as con:
        con.execute(
            f"INSERT INTO runs (run_id, experiment, kind, status, created_at, started_at, ended_at, duration_s) "
            f"SELECT {run_id}, 'bench', 'notebook', 'finished', TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i), "
            "TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i), "
            "TIMESTAMPTZ '2024-01-01 00:00:01+00' + to_seconds(i), 1.0 FROM range(?) t(i)",
            [runs],
        )
        con.execute(
            f"INSERT INTO run_params SELECT {run_id}, 'p' || j, to_json(v), v, CAST(v AS VARCHAR) FROM "
            "(SELECT i, j, ((i * 7 + j * 3) % 10)::INTEGER AS v FROM range(?) t(i), range(?) s(j))",
            [runs, PARAMS],
        )
        con.execute(
            f"INSERT INTO run_metrics SELECT {run_id}, 'm' || j, 0, x, TIMESTAMPTZ '2024-01-01 00:00:01+00' "
            f"+ to_seconds(i) FROM (SELECT i, j, ((i * 7919 + j * 104729) % {PRIME}) / {PRIME} AS x "
            "FROM range(?) t(i), range(?) s(j))",
            [runs, METRICS],
        )
        con.execute("INSERT INTO run_metric_summary SELECT run_id, key, value, value, value, 0, 1 FROM run_metrics")
        con.execute("INSERT INTO experiments VALUES ('bench', TIMESTAMPTZ '2024-01-01 00:00:00+00', 'bench', NULL)")


def build_mlflow(folder: Path, runs: int) -> None:
    """An MLflow sqlite store with the same runs: schema by MLflow, rows by sqlite3 executemany."""
    from mlflow import MlflowClient

    folder.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment_id = client.create_experiment("bench", artifact_location=str(folder / "artifacts"))
    con = sqlite3.connect(folder / "mlflow.db")
    try:
        con.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
            "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
            "VALUES (?, ?, 'LOCAL', '', '', 'bench', 'FINISHED', ?, ?, '', 'active', ?, ?)",
            ((f"{i:032x}", f"run-{i}", START_MS + i * 1000, START_MS + i * 1000 + 1000,
              str(folder / "artifacts" / f"{i:032x}"), int(experiment_id)) for i in range(runs)),
        )  # fmt: skip
        con.executemany(
            "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
            ((f"p{j}", str(_param(i, j)), f"{i:032x}") for i in range(runs) for j in range(PARAMS)),
        )
        metric_rows = [
            (f"m{j}", _metric(i, j), START_MS + i * 1000 + 1000, 0, 0, f"{i:032x}")
            for i in range(runs)
            for j in range(METRICS)
        ]
        con.executemany(
            "INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?)",
            metric_rows,
        )
        con.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?)",
            metric_rows,
        )
        con.executemany(
            "INSERT INTO tags (key, value, run_uuid) VALUES ('mlflow.runName', ?, ?)",
            ((f"run-{i}", f"{i:032x}") for i in range(runs)),
        )
        con.commit()
    finally:
        con.close()


def trial(case: str, scratch: str) -> None:
    """One fresh process: open the store, one untimed warm-up query, then CALLS timed queries."""
    folder = Path(scratch)
    if case == "workbench":
        from workbench.runs.query import runs
        from workbench.workspace import open_workspace

        ws = open_workspace(folder / "workbench" / ".workbench")

        def query():
            frame = runs(filter=WB_FILTER, order_by=ORDER, limit=LIMIT, ws=ws)
            return len(frame), int(frame["run_id"].iloc[0][-8:], 16), frame.shape[1]

    elif case == "mlflow":
        import logging

        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow' / 'mlflow.db'}")
        experiment_id = mlflow.get_experiment_by_name("bench").experiment_id

        def query():
            frame = mlflow.search_runs(
                experiment_ids=[experiment_id], filter_string=MLFLOW_FILTER, order_by=[ORDER], max_results=LIMIT
            )
            return len(frame), int(frame["run_id"].iloc[0], 16), frame.shape[1]

    else:
        raise SystemExit(f"unknown case {case}")
    start = time.perf_counter()
    rows, first, width = query()
    cold = time.perf_counter() - start
    times: list[float] = []
    while len(times) < CALLS and (not times or sum(times) < CALL_BUDGET_S):
        start = time.perf_counter()
        query()
        times.append(time.perf_counter() - start)
    report_trial(statistics.median(times), cold_seconds=cold, rows=rows, first=first, columns=width)


def _build(scratch: Path, runs: int) -> tuple[float, float]:
    """Both stores with the same runs; the seconds each took to build."""
    start = time.perf_counter()
    build_workbench(scratch / "workbench", runs)
    wb_build = time.perf_counter() - start
    start = time.perf_counter()
    build_mlflow(scratch / "mlflow", runs)
    return wb_build, time.perf_counter() - start


def _check_same_answer(wb: Series, ml: Series) -> None:
    for key in ("rows", "first"):  # both answered the same question
        if wb.values(key) != ml.values(key):
            raise RuntimeError(f"workbench and mlflow disagree on {key}: {wb.values(key)} vs {ml.values(key)}")


def compare_side_by_side(runs: int, repeats: int) -> Comparison:
    """Both tools on `runs` runs, interleaved, `repeats` trials each."""
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-query-"))
    try:
        wb_build, mlflow_build = _build(scratch, runs)
        series = interleave(
            {
                "workbench runs()": lambda: run_trial(MODULE, "workbench", [str(scratch)]),
                "mlflow.search_runs (sqlite)": lambda: run_trial(MODULE, "mlflow", [str(scratch)]),
            },
            repeats,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wb, ml = series["workbench runs()"], series["mlflow.search_runs (sqlite)"]
    _check_same_answer(wb, ml)
    wb_ms, ml_ms = wb.median() * 1000, ml.median() * 1000
    note = (
        f"{runs:,} runs x {PARAMS} params x {METRICS} metrics in both stores; filter '{WB_FILTER}', "
        f"order by {ORDER}, limit {LIMIT} -> {int(wb.values('rows')[0])} rows. Median of up to {CALLS} warm calls per "
        f"trial: Workbench {wb_ms:.0f} ms (target < 1000 ms), MLflow {ml_ms:.0f} ms, ratio {wb_ms / ml_ms:.3f}; "
        f"first call: Workbench {wb.median('cold_seconds') * 1000:.0f} ms, MLflow "
        f"{ml.median('cold_seconds') * 1000:.0f} ms. Stores built in {wb_build:.1f} s (Workbench, SQL) and "
        f"{mlflow_build:.1f} s (MLflow: schema by MLflow, rows by sqlite3 bulk insert)."
    )
    return Comparison(f"runs() filter+sort top {LIMIT} of {runs // 1000}k runs vs mlflow.search_runs", wb, ml,
                      target=0.1, note=note)  # fmt: skip


def compare_at_scale(runs: int, repeats: int, mlflow_timeout: float) -> Comparison:
    """Workbench `repeats` times on `runs` runs; MLflow once, given at most `mlflow_timeout` seconds.

    At 100,000 runs one `search_runs` call takes more than ten minutes here (measured), so MLflow
    gets one trial with a time limit; when it does not answer in time its figure is that limit, and
    the ratio is an upper bound (Workbench is at least that much faster).
    """
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-query-"))
    try:
        wb_build, mlflow_build = _build(scratch, runs)
        wb = Series("workbench runs()", [run_trial(MODULE, "workbench", [str(scratch)]) for _ in range(repeats)])
        ml = Series("mlflow.search_runs (sqlite)")
        try:
            ml.trials.append(run_trial(MODULE, "mlflow", [str(scratch)], timeout=mlflow_timeout))
            answered = True
        except subprocess.TimeoutExpired:
            ml.trials.append(Trial(mlflow_timeout, 0.0, {"cold_seconds": mlflow_timeout}))
            answered = False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if answered:
        _check_same_answer(wb, ml)
    wb_ms = wb.median() * 1000
    mlflow_text = (f"MLflow {ml.median() * 1000:.0f} ms" if answered else
                   f"MLflow did not answer within {mlflow_timeout:.0f} s (its figure is that limit, so the ratio "
                   f"is an upper bound)")  # fmt: skip
    note = (
        f"{runs:,} runs x {PARAMS} params x {METRICS} metrics; same query. Workbench {wb_ms:.0f} ms median of "
        f"{repeats} trials (target < 1000 ms; first call {wb.median('cold_seconds') * 1000:.0f} ms); {mlflow_text}. "
        f"Stores built in {wb_build:.1f} s and {mlflow_build:.1f} s."
    )
    return Comparison(f"runs() filter+sort top {LIMIT} of {runs // 1000}k runs vs mlflow.search_runs", wb, ml,
                      target=0.1, note=note)  # fmt: skip


def run(
    repeats: int = 3, runs: int = 20_000, scale_runs: int = 100_000, mlflow_timeout: float = 180.0
) -> list[Comparison]:
    """Side by side where MLflow answers in seconds; then the issue's 100,000 runs with MLflow time-limited."""
    results = [compare_side_by_side(runs, repeats)]
    if scale_runs:
        results.append(compare_at_scale(scale_runs, repeats, mlflow_timeout))
    return results


if __name__ == "__main__":
    trial(*sys.argv[1:3])

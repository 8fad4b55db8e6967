"""Searching runs: `workbench.runs.query.runs()` vs `mlflow.search_runs` on the same synthetic runs.

Both stores hold the same N runs x 10 params x 10 metrics: a Workbench catalog filled with bulk
SQL, and an MLflow sqlite tracking store whose schema MLflow creates itself and whose rows are
then bulk-inserted with sqlite3 (logging 100,000 runs through `MlflowClient.log_batch` would take
hours; the rows written are the ones log_batch writes: runs, params, metrics, latest_metrics).
The query is a filtered, sorted top-1000: the typical "best runs where ..." question.

`compare_warm` measures the same query as a long-lived process (the Jupyter server, a widget, a
notebook polling) sees it: repeated in one process, answered by the in-process read cache while
the catalog is unchanged, against the per-call catalog read (cache off) that the MLflow
comparison measures.

`compare_wide` is issue 21's wide run table: every run of an experiment at once (30,000 runs x 10
params x 100 metrics), through `runs(limit=None)` and through the JupyterLab Runs table's REST call
(`GET runs?format=columns` to a real `jupyter server`), against one time-limited `mlflow.search_runs`
of the same store.

Run a single trial: `python -m benchmarks.bench_query CASE SCRATCH_DIR`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from benchmarks.harness import Comparison, Series, Trial, interleave, report_trial, run_trial

MODULE = "benchmarks.bench_query"
T = TypeVar("T")
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


def build_workbench(folder: Path, runs: int, metrics: int = METRICS) -> None:
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
            [runs, metrics],
        )
        con.execute("INSERT INTO run_metric_summary SELECT run_id, key, value, value, value, 0, 1 FROM run_metrics")
        con.execute("INSERT INTO experiments VALUES ('bench', TIMESTAMPTZ '2024-01-01 00:00:00+00', 'bench', NULL)")


def build_mlflow(folder: Path, runs: int, metrics: int = METRICS) -> None:
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

        def metric_rows() -> Iterator[tuple]:  # generated twice rather than held: 3,000,000 rows for the wide table
            return ((f"m{j}", _metric(i, j), START_MS + i * 1000 + 1000, 0, 0, f"{i:032x}")
                    for i in range(runs) for j in range(metrics))  # fmt: skip

        con.executemany(
            "INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?)",
            metric_rows(),
        )
        con.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?)",
            metric_rows(),
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
    if case == "workbench-warm":
        return warm_trial(folder)
    if case.startswith("wide-"):
        return wide_trial(case, folder)
    if case == "workbench":
        os.environ["WORKBENCH_READ_CACHE"] = "0"  # every call reads the catalog (as MLflow reads its store)
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


def warm_trial(folder: Path) -> None:
    """One long-lived process with the read cache on: a warm-up call (it reads the catalog), then
    CALLS timed calls answered from memory; then one call after a write in this process (which
    must read the catalog again) and the cost of the private copy each hit returns."""
    from workbench.catalog import read_cache, transaction
    from workbench.runs.query import runs
    from workbench.workspace import open_workspace

    ws = open_workspace(folder / "workbench" / ".workbench")
    # The cache trusts a catalog only RACY_WINDOW_S after its last change (see read_cache): the
    # store was built moments ago, so wait that long rather than time reads it may not keep.
    age = time.time() - ws.catalog_path.stat().st_mtime
    time.sleep(max(0.0, read_cache.RACY_WINDOW_S - age + 0.05))

    def query():
        frame = runs(filter=WB_FILTER, order_by=ORDER, limit=LIMIT, ws=ws)
        return len(frame), int(frame["run_id"].iloc[0][-8:], 16), frame.shape[1]

    start = time.perf_counter()
    rows, first, width = query()
    cold = time.perf_counter() - start
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        query()
        times.append(time.perf_counter() - start)
    hits = read_cache.CACHE.stats()["hits"]
    with transaction(ws):
        pass  # a write by this process: the next read must not come from the cache
    start = time.perf_counter()
    query()
    after_write = time.perf_counter() - start
    frame = runs(filter=WB_FILTER, order_by=ORDER, limit=LIMIT, ws=ws)
    start = time.perf_counter()
    for _ in range(100):
        frame.copy(deep=True)
    copy_s = (time.perf_counter() - start) / 100
    report_trial(statistics.median(times), cold_seconds=cold, after_write_seconds=after_write, copy_seconds=copy_s,
                 hits=hits, rows=rows, first=first, columns=width)  # fmt: skip


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


#: runs() per call before the read cache (benchmarks/results, issue 21): the figures to beat warm.
BEFORE_WARM_MS = {20_000: 74, 100_000: 119}
WARM_TARGET_MS = 40


def compare_warm(runs: int, repeats: int) -> Comparison:
    """The query repeated in one long-lived process: read cache on vs off, interleaved trials."""
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-query-warm-"))
    try:
        build_workbench(scratch / "workbench", runs)
        series = interleave(
            {
                "runs() warm (read cache)": lambda: run_trial(MODULE, "workbench-warm", [str(scratch)]),
                "runs() per call (cache off)": lambda: run_trial(MODULE, "workbench", [str(scratch)]),
            },
            repeats,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    warm, uncached = series["runs() warm (read cache)"], series["runs() per call (cache off)"]
    if warm.values("rows") != uncached.values("rows") or warm.values("first") != uncached.values("first"):
        raise RuntimeError("the cached and uncached runs() disagree")
    warm_ms = warm.median() * 1000
    before = BEFORE_WARM_MS.get(runs)
    note = (
        f"{runs:,} runs, same query, {CALLS} calls per process after a warm-up: warm in-process median "
        f"{warm_ms:.2f} ms (target <= {WARM_TARGET_MS} ms: {'met' if warm_ms <= WARM_TARGET_MS else 'NOT met'}"
        f"{f'; before the read cache {before} ms' if before else ''}); per call with the cache off "
        f"{uncached.median() * 1000:.0f} ms (the fresh-process figure of the MLflow comparison). In the warm process: "
        f"first call {warm.median('cold_seconds') * 1000:.0f} ms, first call after a write in the process "
        f"{warm.median('after_write_seconds') * 1000:.0f} ms (reads the catalog again), a hit's private copy of "
        f"the {int(warm.values('rows')[0])}-row frame {warm.median('copy_seconds') * 1000:.2f} ms; "
        f"{int(min(warm.values('hits')))}/{CALLS} calls answered from the cache."
    )
    return Comparison(f"runs() top {LIMIT} of {runs // 1000}k runs, warm in-process vs per-call read", warm,
                      uncached, note=note)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Wide run tables (issue 21): every run of an experiment, 100 metrics each

WIDE_METRICS = 100
#: What the wide table cost before issue 21's fix (DuckDB pivot, columnar fetch, floats to JSON in
#: DuckDB), on this benchmark's machine; the REST figure is this benchmark's trial run on that code.
WIDE_BEFORE = {30_000: "wb.runs 3.3 s (4 calls, 3.28-3.43 s); Runs table REST 4.4 s (3 calls, 4.02-4.77 s)"}
#: Seconds the JupyterLab Runs table may wait for the whole table (wb.runs and the REST call alike).
WIDE_TARGET_S = 1.0
#: The Runs table's request for every run of the experiment (`limit` up to the API's maximum).
WIDE_REST_PATH = "workbench/api/runs?format=columns&experiment=bench&limit=100000"
REST_TOKEN = "workbench-bench"


@contextmanager
def jupyter_server(root: Path, scratch: Path) -> Iterator[str]:
    """A `jupyter server` with the Workbench extension on `root` (its workspace: `root/.workbench`),
    with Jupyter's config, data and runtime folders of its own under `scratch`; yields its URL."""
    import json
    import socket

    config = scratch / "jupyter-config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"workbench.jupyter": True}}})
    )
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_DATA_DIR": str(scratch / "jupyter-data"),
           "JUPYTER_RUNTIME_DIR": str(scratch / "jupyter-runtime"), "WORKBENCH_READ_CACHE": "0"}  # fmt: skip
    env.pop("WORKBENCH_HOME", None)  # the workspace is found from the server's root, as in real use
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(scratch / "server.log", "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
         "--port", str(port), f"--IdentityProvider.token={REST_TOKEN}", f"--ServerApp.root_dir={root}"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/workbench/api/experiments?token={REST_TOKEN}", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (scratch / "server.log").read_text()[-3000:]
                    raise RuntimeError("jupyter server did not start:\n" + log_text) from None
                time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wide_trial(case: str, folder: Path) -> None:
    """One fresh process on the wide store, read cache off (every call reads the catalog, as after
    any run logs a metric):

    - "wide-workbench": `runs(experiment="bench", limit=None)`;
    - "wide-rest": the Runs table's `GET runs?format=columns`, from request to the last byte
      received, against a `jupyter server` started on the workspace (startup not timed);
    - "wide-mlflow": one `mlflow.search_runs` of the experiment (minutes: no warm-up, one call).

    Workbench: one untimed warm-up, then up to CALLS timed calls.
    """
    import json

    os.environ["WORKBENCH_READ_CACHE"] = "0"
    if case == "wide-mlflow":
        import logging

        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow' / 'mlflow.db'}")
        experiment_id = mlflow.get_experiment_by_name("bench").experiment_id
        start = time.perf_counter()
        frame = mlflow.search_runs(experiment_ids=[experiment_id], max_results=100_000)
        seconds = time.perf_counter() - start
        metrics = sum(1 for name in frame.columns if name.startswith("metrics."))
        report_trial(seconds, cold_seconds=seconds, rows=len(frame), metrics=metrics, columns=frame.shape[1])
        return
    if case == "wide-workbench":
        from workbench.runs.query import runs
        from workbench.workspace import open_workspace

        ws = open_workspace(folder / "workbench" / ".workbench")

        def query() -> tuple[int, list[str], int]:
            frame = runs(experiment="bench", limit=None, ws=ws)
            return len(frame), [str(name) for name in frame.columns], 0

        times, cold, (rows, columns, size) = _timed(query)
        report_trial(statistics.median(times), cold_seconds=cold, calls=times, rows=rows, columns=len(columns),
                     metrics=sum(1 for c in columns if c.startswith("metrics.")))  # fmt: skip
        return
    if case != "wide-rest":
        raise SystemExit(f"unknown case {case}")
    with jupyter_server(folder / "workbench", folder / f"rest-{os.getpid()}") as base:

        def request() -> tuple[int, list[str], int]:
            with urllib.request.urlopen(f"{base}/{WIDE_REST_PATH}&token={REST_TOKEN}", timeout=600) as answer:
                body = answer.read()
            return -1, [], len(body)

        times, cold, (_, _, size) = _timed(request)
        with urllib.request.urlopen(f"{base}/{WIDE_REST_PATH}&token={REST_TOKEN}", timeout=600) as answer:
            table = json.loads(answer.read())  # untimed: what came back
    columns = table["columns"]
    report_trial(statistics.median(times), cold_seconds=cold, calls=times, rows=table["rows"], columns=len(columns),
                 metrics=sum(1 for c in columns if c.startswith("metrics.")), megabytes=size / 1e6)  # fmt: skip


def _timed(call: Callable[[], T]) -> tuple[list[float], float, T]:
    """An untimed-for-the-median first call (returned as the cold time), then up to CALLS timed calls."""
    start = time.perf_counter()
    result = call()
    cold = time.perf_counter() - start
    times: list[float] = []
    while len(times) < CALLS and (not times or sum(times) < CALL_BUDGET_S):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times, cold, result


def compare_wide(runs: int, repeats: int, mlflow_timeout: float) -> list[Comparison]:
    """`runs` runs x WIDE_METRICS metrics x PARAMS params, all of them asked for at once: Workbench's
    `runs(limit=None)` and the Runs table's REST call (`repeats` interleaved trials each) against
    one time-limited `mlflow.search_runs` (minutes at 30,000 runs: one trial, as in `compare_at_scale`)."""
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-wide-"))
    try:
        start = time.perf_counter()
        build_workbench(scratch / "workbench", runs, WIDE_METRICS)
        wb_build = time.perf_counter() - start
        start = time.perf_counter()
        build_mlflow(scratch / "mlflow", runs, WIDE_METRICS)
        mlflow_build = time.perf_counter() - start
        series = interleave(
            {
                "workbench runs(limit=None)": lambda: run_trial(MODULE, "wide-workbench", [str(scratch)]),
                "Runs table REST (format=columns)": lambda: run_trial(MODULE, "wide-rest", [str(scratch)]),
            },
            repeats,
        )
        ml = Series("mlflow.search_runs (sqlite)")
        try:
            ml.trials.append(run_trial(MODULE, "wide-mlflow", [str(scratch)], timeout=mlflow_timeout))
            answered = True
        except subprocess.TimeoutExpired:
            ml.trials.append(Trial(mlflow_timeout, 0.0, {"cold_seconds": mlflow_timeout}))
            answered = False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wb, rest = series["workbench runs(limit=None)"], series["Runs table REST (format=columns)"]
    for subject in (wb, rest) + ((ml,) if answered else ()):
        if set(subject.values("rows")) != {runs} or set(subject.values("metrics")) != {WIDE_METRICS}:
            raise RuntimeError(f"{subject.label} did not answer {runs} rows x {WIDE_METRICS} metrics")
    mlflow_text = (f"MLflow {ml.median():.1f} s" if answered else
                   f"MLflow did not answer within {mlflow_timeout:.0f} s (its figure is that limit, so the ratio "
                   f"is an upper bound)")  # fmt: skip
    before = f" Before: {WIDE_BEFORE[runs]}." if runs in WIDE_BEFORE else ""

    def figure(subject: Series, what: str) -> str:
        median = subject.median()
        calls = [t for trial in subject.trials for t in trial.extra["calls"]]
        met = "met" if median < WIDE_TARGET_S else "NOT met"
        return (f"{what} {median:.2f} s median of {len(subject.trials)} fresh processes x up to {CALLS} warm calls "
                f"(all calls {min(calls):.2f}-{max(calls):.2f} s; first call {subject.median('cold_seconds'):.2f} s; "
                f"target < {WIDE_TARGET_S:g} s: {met})")  # fmt: skip

    shape = (f"{runs:,} runs x {PARAMS} params x {WIDE_METRICS} metrics, the whole experiment "
             f"({int(wb.values('columns')[0])} columns), read cache off")  # fmt: skip
    built = f"Stores built in {wb_build:.1f} s (Workbench) and {mlflow_build:.1f} s (MLflow)."
    wide = f"wide run table {runs:,} runs x {WIDE_METRICS} metrics"
    return [
        Comparison(f"wb.runs(limit=None), {wide} vs mlflow.search_runs", wb, ml, target=0.1,
                   note=f"{shape}: {figure(wb, 'Workbench')}; {mlflow_text}.{before} {built}"),
        Comparison(f"Runs table REST (GET runs?format=columns), {wide} vs mlflow.search_runs", rest, ml, target=0.1,
                   note=f"{shape}; jupyter server on the workspace, urllib client, request to last byte of "
                        f"{rest.median('megabytes'):.0f} MB of JSON: {figure(rest, 'REST')}; {mlflow_text}.{before} "
                        f"{built}"),
    ]  # fmt: skip


def run(
    repeats: int = 3,
    runs: int = 20_000,
    scale_runs: int = 100_000,
    mlflow_timeout: float = 180.0,
    wide_runs: int = 30_000,
) -> list[Comparison]:
    """Side by side where MLflow answers in seconds; then the issue's 100,000 runs with MLflow time-limited;
    then the warm in-process figures (read cache) at both sizes."""
    results = [compare_side_by_side(runs, repeats)]
    if scale_runs:
        results.append(compare_at_scale(scale_runs, repeats, mlflow_timeout))
    results += [compare_warm(n, repeats) for n in (runs, scale_runs) if n]
    if wide_runs:
        results += compare_wide(wide_runs, repeats, mlflow_timeout)
    return results


if __name__ == "__main__":
    trial(*sys.argv[1:3])

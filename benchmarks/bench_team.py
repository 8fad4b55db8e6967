"""The team server (issue 18): remote logging vs MLflow's tracking server, a query through the server,
and read latency while 32 clients log.

- Remote logging: a client process logs METRICS step metrics through `workbench server` (`wb.connect`,
  a `wb.log_metric` loop, `wb.end_run` waiting until the server has everything) against a client
  of `mlflow server` (its default store, on loopback, started here) with a `mlflow.log_metric` loop
  (time-limited) and with `log_batch` (1,000 per call). Run creation and the end of the run are
  inside both clocks; imports (`workbench.tracking`, `mlflow`) and `wb.connect` / `set_experiment` are not.
- Query: `GET /api/v1/runs` with bench_query's filter, order and limit over its 100,000 runs, from
  a client process to a warm server: median of CALLS calls after one untimed call.
- Read latency: a fresh server, 32 client processes each logging 1,000 metrics (the remote path, as
  above), and a reader listing runs (`GET /api/v1/runs`) every 100 ms: its p99. The load is
  tests/team_load.py's, which tests/test_team_load.py puts on a server at a smaller scale.

One trial: `python -m benchmarks.bench_team CASE ARGS...` (see `trial`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.bench_runs import mlflow_log_batch
from benchmarks.harness import Comparison, Series, Trial, interleave, report_trial, run_trial

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the load the tests put on a server

from team_load import EXPERIMENT, clean_env, log_while_reading  # noqa: E402

MODULE = "benchmarks.bench_team"
VENV_BIN = Path(sys.executable).parent
CALLS = 20
WRITERS = 32
WRITER_METRICS = 1000
QUERY_TARGET_MS = 50
READ_P99_TARGET_MS = 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer /health within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    else:  # the leader is gone; helpers it started may not be (mlflow's job runner)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def new_workspace(home: Path) -> dict[str, str]:
    """`workbench init` (unless `home` exists) and two users: their tokens by role."""
    workbench = str(VENV_BIN / "workbench")
    if not home.exists():
        subprocess.run([workbench, "--home", str(home), "init"], check=True, env=clean_env(), capture_output=True)
    tokens = {}
    for name, role in (("ed", "editor"), ("vera", "viewer")):
        proc = subprocess.run([workbench, "--home", str(home), "server", "user", "add", name, "--role", role],
                              check=True, env=clean_env(), capture_output=True, text=True)  # fmt: skip
        tokens[role] = proc.stdout.strip()
    return tokens


@contextmanager
def _serving(command: list[str], cwd: Path, log: Path, port: int) -> Iterator[tuple[str, Path]]:
    """`command` (a server on loopback `port`, in a session of its own) until the block ends, once it
    answers; its URL and log."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=clean_env(), start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url, log
    finally:
        _stop(proc)


@contextmanager
def workbench_server(home: Path) -> Iterator[str]:
    """`workbench server` on `home` (a free port), until the block ends: its URL."""
    port = _free_port()
    command = [str(VENV_BIN / "workbench"), "server", "--home", str(home), "--port", str(port)]
    with _serving(command, home.parent, home.parent / f"server-{port}.log", port) as (url, log):
        yield url
    text = log.read_text()
    if "Traceback" in text or "ERROR" in text:
        raise RuntimeError(f"the server logged an error:\n{text[-4000:]}")


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """`mlflow server` with its default store (in `folder`, its working directory) on loopback."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    command = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
    with _serving(command, folder, folder / "mlflow-server.log", port) as (url, _log):
        yield url


# --------------------------------------------------------------------------------------------
# Trials (fresh processes)


def trial_wb_remote(url: str, token: str, count: str, workdir: str) -> None:
    """One client: `count` step metrics through the server, until it has them all."""
    import httpx

    os.environ["WORKBENCH_SPOOL"] = str(Path(workdir) / "spool")  # this trial's own spool: no leftovers
    os.environ["WORKBENCH_SYNC_TIMEOUT"] = "300"
    import workbench as wb
    import workbench.remote.sender
    import workbench.tracking  # noqa: F401  (imports before the clock, as `import mlflow` for MLflow: ~0.5 s, pandas)

    n = int(count)
    wb.connect(url, token=token)
    start = time.perf_counter()
    for step in range(n):
        wb.log_metric("loss", 1.0 / (step + 1), step=step)
    run_id = wb.tracking.active_run_id()
    wb.end_run()
    seconds = time.perf_counter() - start
    state = wb.sync_state(run_id)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        run = http.get(f"/api/v1/runs/{run_id}").json()
    if state["state"] != "synced" or run["status"] != "finished" or run["metrics"]["loss"] != 1.0 / n:
        raise SystemExit(f"the run did not arrive whole: {state} {run}")
    shutil.rmtree(workdir, ignore_errors=True)
    report_trial(seconds, bytes=state["bytes"])


def trial_mlflow(case: str, url: str, count: str, limit: str) -> None:
    """One MLflow client: `count` step metrics by `log_metric` (stopped after `limit` s) or `log_batch`."""
    import mlflow

    n, limit_s = int(count), float(limit)
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("bench")
    done = 0
    start = time.perf_counter()
    with mlflow.start_run() as active:
        if case == "mlflow-loop":
            for step in range(n):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
                done += 1
                if time.perf_counter() - start > limit_s:
                    break
        else:
            mlflow_log_batch(active.info.run_id, n)
            done = n
    seconds = time.perf_counter() - start
    report_trial(min(seconds, limit_s) if done < n else seconds, logged=done, elapsed=seconds)


def trial_query(url: str, token: str) -> None:
    """CALLS timed `GET /api/v1/runs` (filter, order, top LIMIT) after one untimed call: their median."""
    import httpx

    from benchmarks.bench_query import LIMIT, ORDER, WB_FILTER

    params = {"filter": WB_FILTER, "order_by": ORDER, "limit": str(LIMIT)}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        start = time.perf_counter()
        first = http.get("/api/v1/runs", params=params)
        cold = time.perf_counter() - start
        first.raise_for_status()
        rows = first.json()
        times = []
        for _ in range(CALLS):
            start = time.perf_counter()
            response = http.get("/api/v1/runs", params=params)
            response.raise_for_status()
            times.append(time.perf_counter() - start)
            if len(response.json()) != len(rows):
                raise SystemExit("the answer changed between calls")
    report_trial(statistics.median(times), cold_seconds=cold, p90_seconds=sorted(times)[int(0.9 * (CALLS - 1))],
                 rows=len(rows), first=int(rows[0]["run_id"][-8:], 16), bytes=len(first.content))  # fmt: skip


def trial_load(workdir: str, writers: str, metrics: str) -> None:
    """A fresh server, `writers` client processes logging `metrics` points each, a reader every 100 ms."""
    work = Path(workdir)
    shutil.rmtree(work, ignore_errors=True)
    home = work / "server" / ".workbench"
    home.parent.mkdir(parents=True)
    tokens = new_workspace(home)
    before = os.getloadavg()[0]
    with workbench_server(home) as url:
        load = log_while_reading(url, tokens["viewer"], tokens["editor"], work, int(writers), int(metrics))
    unsynced = [outcome for outcome in load.outcomes.values() if outcome["state"] != "synced"]
    if unsynced:
        raise SystemExit(f"{len(unsynced)} run(s) did not sync: {unsynced[:3]}")
    shutil.rmtree(work, ignore_errors=True)
    report_trial(load.seconds, **load.figures(), load_before=before, load_after=os.getloadavg()[0])


def trial(case: str, *args: str) -> None:
    if case == "wb-remote":
        trial_wb_remote(*args)
    elif case in ("mlflow-loop", "mlflow-batch"):
        trial_mlflow(case, *args)
    elif case == "query":
        trial_query(*args)
    elif case == "load":
        trial_load(*args)
    else:
        raise SystemExit(f"unknown case {case}")


# --------------------------------------------------------------------------------------------
# Comparisons


def _constant(label: str, value: float, key: str, n: int) -> Series:
    """A target as a baseline column (as bench_extension does): ratio = measured / target, met when <= 1."""
    return Series(label, [Trial(value, 0.0, {key: value}) for _ in range(n)])


def compare_logging(repeats: int, metrics: int, loop_limit_s: float) -> list[Comparison]:
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-team-"))
    try:
        home = scratch / "server" / ".workbench"
        home.parent.mkdir()
        token = new_workspace(home)["editor"]
        with workbench_server(home) as url, mlflow_server(scratch / "mlflow") as mlflow_url:
            count = str(metrics)
            series = interleave(
                {
                    "wb client -> workbench server": lambda: run_trial(
                        MODULE, "wb-remote", [url, token, count, str(scratch / "client")]
                    ),
                    "mlflow log_batch -> mlflow server": lambda: run_trial(
                        MODULE, "mlflow-batch", [mlflow_url, count, "3600"]
                    ),
                    "mlflow.log_metric loop -> mlflow server": lambda: run_trial(
                        MODULE, "mlflow-loop", [mlflow_url, count, str(loop_limit_s)]
                    ),
                },
                repeats,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wb, batch, loop = series.values()
    logged = [int(v) for v in loop.values("logged")]
    elapsed = loop.median("elapsed")
    finished = all(n >= metrics for n in logged)
    loop_text = (
        f"MLflow's loop finished within its {loop_limit_s:.0f} s limit"
        if finished
        else f"MLflow's loop was stopped at its {loop_limit_s:.0f} s limit after {min(logged):,}-{max(logged):,} of "
        f"{metrics:,} points (its figure is the limit, so the ratio is an upper bound; at its rate the whole loop "
        f"would take about {elapsed * metrics / statistics.median(logged):.0f} s)"
    )
    common = (
        f"client processes on loopback; `mlflow server` {_mlflow_version()} with its default store (sqlite "
        f"mlflow.db), started by the benchmark. Workbench: wb.connect, then the clock: {metrics:,} wb.log_metric, "
        "wb.end_run waiting until the server has every point (checked: synced, run finished, last value)"
    )
    return [
        Comparison(f"remote logging, {metrics:,} step metrics vs MLflow server log_metric loop", wb, loop, target=0.1,
                   note=f"target at least 10x faster (ratio <= 0.1); {common}. {loop_text}."),
        Comparison(f"remote logging, {metrics:,} step metrics vs MLflow server log_batch", wb, batch, target=0.5,
                   note=f"target at least 2x faster (ratio <= 0.5); MLflow log_batch of 1,000 points per call; "
                        f"{common}."),
    ]  # fmt: skip


def _mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")


def compare_query(repeats: int, runs: int) -> Comparison:
    from benchmarks.bench_query import LIMIT, METRICS, ORDER, PARAMS, WB_FILTER, build_workbench

    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-team-query-"))
    try:
        start = time.perf_counter()
        build_workbench(scratch, runs)
        built = time.perf_counter() - start
        home = scratch / ".workbench"
        token = new_workspace(home)["viewer"]
        with workbench_server(home) as url:
            subject = Series("GET /api/v1/runs", [run_trial(MODULE, "query", [url, token]) for _ in range(repeats)])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ms = subject.median() * 1000
    note = (
        f"{runs:,} runs x {PARAMS} params x {METRICS} metrics (bench_query's store, built in {built:.1f} s); filter "
        f"'{WB_FILTER}', order by {ORDER}, limit {LIMIT} -> {int(subject.values('rows')[0])} rows "
        f"({int(subject.values('bytes')[0]):,} bytes of JSON), from a client process over loopback to a warm server. "
        f"Median of {CALLS} calls per trial after one untimed call: {ms:.1f} ms (target < {QUERY_TARGET_MS} ms; "
        f"p90 {subject.median('p90_seconds') * 1000:.1f} ms); the first call after the server started "
        f"{subject.values('cold_seconds')[0] * 1000:.0f} ms. Ratio = measured / target; the baseline column is the "
        "target, not a measured tool."
    )
    return Comparison(f"query top {LIMIT} of {runs // 1000}k runs through the server (warm)", subject,
                      _constant(f"target {QUERY_TARGET_MS} ms (constant)", QUERY_TARGET_MS / 1000, "seconds",
                                repeats), target=1.0, note=note)  # fmt: skip


def compare_read_latency(repeats: int, writers: int, metrics: int) -> Comparison:
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-team-load-"))
    try:
        subject = Series(
            "reader p99 (ms)",
            [run_trial(MODULE, "load", [str(scratch / "load"), str(writers), str(metrics)]) for _ in range(repeats)],
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    loads = ", ".join(f"{a:.1f} -> {b:.1f}" for a, b in zip(subject.values("load_before"),
                                                           subject.values("load_after"), strict=True))  # fmt: skip
    note = (
        f"a fresh server; {writers} client processes of one machine (one spool) each log {metrics:,} step metrics "
        "through it (wb.connect, wb.log_metric loop, wb.end_run waiting for the sync), while another process lists "
        f"the runs (GET /api/v1/runs?experiment={EXPERIMENT}) every 100 ms. p99 of the reader's latency per trial: "
        f"{', '.join(f'{v:.0f}' for v in subject.values('p99_ms'))} ms (p50 "
        f"{', '.join(f'{v:.0f}' for v in subject.values('p50_ms'))} ms; max "
        f"{', '.join(f'{v:.0f}' for v in subject.values('max_ms'))} ms; "
        f"{', '.join(str(int(v)) for v in subject.values('reads'))} reads); all points synced in "
        f"{', '.join(f'{v:.1f}' for v in subject.values())} s, no error in any process; the machine's 1-minute "
        f"load average before -> after each trial: {loads}. Target p99 < "
        f"{READ_P99_TARGET_MS} ms; ratio = measured / target."
    )
    return Comparison(f"read latency p99 under {writers} writers (ms)", subject,
                      _constant(f"target {READ_P99_TARGET_MS} ms (constant)", READ_P99_TARGET_MS, "p99_ms", repeats),
                      metric="p99_ms", target=1.0, note=note)  # fmt: skip


def run(repeats: int = 3, metrics: int = 10_000, loop_limit_s: float = 60.0, query_runs: int = 100_000,
        writers: int = WRITERS, writer_metrics: int = WRITER_METRICS) -> list[Comparison]:  # fmt: skip
    return [
        *compare_logging(repeats, metrics, loop_limit_s),
        compare_query(repeats, query_runs),
        compare_read_latency(repeats, writers, writer_metrics),
    ]


if __name__ == "__main__":
    trial(*sys.argv[1:])

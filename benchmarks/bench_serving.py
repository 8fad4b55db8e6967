"""Model serving: `workbench serve` vs `mlflow models serve --env-manager local`, same model.

Both run as a user would start them: `workbench serve` with its defaults (prediction logging on),
MLflow with one worker (its default). Each trial starts one server as a subprocess on loopback,
waits until it answers, then drives it with 4 client threads sending single-row requests (the
same MLflow-style `dataframe_split` payload to both) for a fixed time, and reports latency
percentiles and throughput.

Run a single trial: `python -m benchmarks.bench_serving CASE WORKDIR SECONDS`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.harness import Comparison, interleave, report_trial, run_trial

MODULE = "benchmarks.bench_serving"
CLIENTS = 4
FEATURES = ["alcohol", "malic_acid", "ash", "color_intensity", "hue", "proline"]


def prepare(work: Path) -> dict[str, str]:
    """Train one model; register it in a Workbench workspace and log it to a local MLflow store."""
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import workbench as wb

    os.chdir(work)  # MLflow puts model artifacts under ./mlruns of the working directory
    frame = load_wine(as_frame=True).frame
    X, y = frame[FEATURES], frame["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    wb.init(work / ".workbench")
    wb.log_model(model, "bench", sample=X.head())
    run_id = wb.active_run_id()
    wb.end_run()
    wb.promote(run_id, "bench")
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    with mlflow.start_run() as active:
        mlflow.sklearn.log_model(model, name="model", input_example=X.head())
    payload = {"dataframe_split": {"columns": FEATURES, "data": [X.iloc[0].tolist()]}}
    info = {"mlflow_uri": f"runs:/{active.info.run_id}/model", "payload": json.dumps(payload)}
    (work / "info.json").write_text(json.dumps(info))
    return info


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(case: str, work: Path, port: int) -> subprocess.Popen:
    env = dict(
        os.environ, WORKBENCH_HOME=str(work / ".workbench"), MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}"
    )
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # mlflow runs `uvicorn` from PATH
    if case == "workbench":
        args = [sys.executable, "-m", "workbench.cli", "serve", "bench@production", "--port", str(port)]
    else:
        info = json.loads((work / "info.json").read_text())
        mlflow = str(Path(sys.executable).parent / "mlflow")
        args = [mlflow, "models", "serve", "-m", info["mlflow_uri"], "--env-manager", "local", "-p", str(port),
                "-h", "127.0.0.1"]  # fmt: skip
    log = open(work / f"{case}-server.log", "ab")  # noqa: SIM115  (owned by the server process)
    return subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)


def trial(case: str, workdir: str, seconds: str) -> None:
    import httpx

    work = Path(workdir)
    info = json.loads((work / "info.json").read_text())
    port = _free_port()
    server = _start(case, work, port)
    url = f"http://127.0.0.1:{port}/invocations" if case == "mlflow" else f"http://127.0.0.1:{port}/predict"
    headers = {"content-type": "application/json"}
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.post(url, content=info["payload"], headers=headers, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"{case} server did not start")
            time.sleep(0.2)
        latencies: list[float] = []
        errors = [0]
        stop = time.monotonic() + float(seconds)

        def client() -> None:
            with httpx.Client(timeout=10) as http:
                while time.monotonic() < stop:
                    started = time.perf_counter()
                    answer = http.post(url, content=info["payload"], headers=headers)
                    latencies.append(time.perf_counter() - started)
                    if answer.status_code != 200:
                        errors[0] += 1

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        begin = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - begin
    finally:
        stop_server(server)
    p50, p99 = percentiles_ms(latencies)
    report_trial(p50 / 1000, p50_ms=p50, p99_ms=p99, rps=len(latencies) / elapsed, errors=errors[0])


def stop_server(server: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM the model server's process group (it was started in a session of its own) and wait."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    server.wait(timeout=timeout)


def percentiles_ms(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 of latencies in seconds, in milliseconds."""
    ordered = sorted(latencies)
    return ordered[len(ordered) // 2] * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def run(repeats: int = 3, seconds: float = 15.0) -> list[Comparison]:
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-serve-"))
    try:
        setup = f"from benchmarks.bench_serving import prepare; import pathlib; prepare(pathlib.Path({str(scratch)!r}))"
        subprocess.run([sys.executable, "-c", setup], check=True, capture_output=True)
        series = interleave(
            {
                "workbench serve": lambda: run_trial(MODULE, "workbench", [str(scratch), str(seconds)]),
                "mlflow models serve": lambda: run_trial(MODULE, "mlflow", [str(scratch), str(seconds)]),
            },
            repeats,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ours, theirs = series["workbench serve"], series["mlflow models serve"]
    p99 = f"p99 {ours.median('p99_ms'):.1f} ms vs {theirs.median('p99_ms'):.1f} ms"
    # Profiled with py-spy on 2026-11-27: 68% of the server's time was scikit-learn re-validating the
    # one-row DataFrame (feature names, narwhals); serving.predict now passes an array when provably
    # equivalent. Before: 186 vs 89 req/s (2.08x, under load), 645 vs 215 (3.0x) on a quiet machine.
    before = "before the array path (2026-11-27, quiet machine): 645 vs 215 req/s, 3.0x; p50 5.0 vs 17.3 ms"
    return [
        Comparison("serving throughput, 4 clients, single row", ours, theirs, metric="rps", better="higher",
                   target=3.0, note=f"requests/s, prediction logging on; {p99}; {before}"),
        Comparison("serving p50 latency, single row", ours, theirs, metric="p50_ms", target=0.5),
    ]  # fmt: skip


if __name__ == "__main__":
    trial(*sys.argv[1:4])

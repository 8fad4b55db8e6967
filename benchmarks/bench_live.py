"""Live model quality (issue 19): what a shadow version and outcome feedback cost the model server.

Each trial starts `workbench serve` as a user would (a subprocess on loopback, prediction logging
on), waits until it answers, then drives it with 4 client threads for a fixed time:

- /predict throughput, single-row requests, with `--shadow 2` vs without (the shadow predicts a
  copy of each request off the response path: target >= 0.8x of the throughput without it), and
  with `--no-log-proba` vs the default (what logging a classifier's probabilities costs: they are
  computed off the response path, by the log's writer);
- /feedback ingestion: outcomes per second sent one per request, and in batches of 1,000
  (`{"outcomes": [...]}`), for rows of requests the server answered.

Run a single trial: `python -m benchmarks.bench_live CASE WORKDIR SECONDS`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_serving import FEATURES, _free_port, percentiles_ms, stop_server
from benchmarks.harness import Comparison, interleave, report_trial, run_trial

MODULE = "benchmarks.bench_live"
CLIENTS = 4
BATCH = 1_000
#: serve options of each /predict case
PREDICT_CASES = {"shadow off": [], "shadow on": ["--shadow", "2"], "no proba": ["--no-log-proba"]}
FEEDBACK_CASES = {"feedback single": 1, "feedback batch": BATCH}


def prepare(work: Path) -> None:
    """Two versions of a wine classifier in a fresh workspace: 1 in production, 2 to shadow it."""
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import workbench as wb

    frame = load_wine(as_frame=True).frame
    X, y = frame[FEATURES], frame["target"]
    wb.init(work / ".workbench")
    for C in (1.0, 0.05):
        wb.log_model(make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000)).fit(X, y), "bench",
                     sample=X.head())  # fmt: skip
        run_id = wb.active_run_id()
        wb.end_run()
        wb.promote(run_id, "bench", alias="production" if C == 1.0 else "candidate")
    payload = {"dataframe_split": {"columns": FEATURES, "data": [X.iloc[0].tolist()]}}
    (work / "payload.json").write_text(json.dumps(payload))


def _start(work: Path, port: int, options: list[str]) -> subprocess.Popen:
    env = dict(os.environ, WORKBENCH_HOME=str(work / ".workbench"))
    env.pop("WORKBENCH_URL", None)
    args = [sys.executable, "-m", "workbench.cli", "serve", "bench@production", "--port", str(port), *options]
    log = open(work / "server.log", "ab")  # noqa: SIM115  (owned by the server process)
    return subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)


def _drive(seconds: float, send: Callable[[object], int]) -> tuple[list[float], int, float, int]:
    """CLIENTS threads calling `send(http)` (returns the items it delivered, or -1 on an error) for
    `seconds`: latencies, items delivered, elapsed time, errors."""
    import httpx

    latencies: list[float] = []
    delivered, errors = [0], [0]
    stop = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                items = send(http)
                latencies.append(time.perf_counter() - started)
                if items < 0:
                    errors[0] += 1
                else:
                    delivered[0] += items

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, delivered[0], time.perf_counter() - begin, errors[0]


def trial(case: str, workdir: str, seconds: str) -> None:
    import httpx

    work = Path(workdir)
    payload = (work / "payload.json").read_text()
    headers = {"content-type": "application/json"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start(work, port, PREDICT_CASES.get(case, []))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.post(f"{url}/predict", content=payload, headers=headers, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server of case {case!r} did not start")
            time.sleep(0.2)
        if case in PREDICT_CASES:

            def send(http: httpx.Client) -> int:
                return 1 if http.post(f"{url}/predict", content=payload, headers=headers).status_code == 200 else -1
        else:
            send = _feedback_sender(url, payload, FEEDBACK_CASES[case])
        latencies, delivered, elapsed, errors = _drive(float(seconds), send)
        shadow = httpx.get(f"{url}/metadata").json()["shadow"] or {}
    finally:
        stop_server(server)
    p50, p99 = percentiles_ms(latencies)
    report_trial(elapsed, rps=len(latencies) / elapsed, per_s=delivered / elapsed, p50_ms=p50, p99_ms=p99,
                 errors=errors, shadow_dropped=shadow.get("dropped", 0),
                 shadow_predicted=shadow.get("predicted", 0))  # fmt: skip


def _feedback_sender(url: str, payload: str, batch: int) -> Callable[[object], int]:
    """Outcomes for the rows of one answered 10,000-row request (then further rows: unknown ones)."""
    import httpx

    row = json.loads(payload)["dataframe_split"]["data"][0]
    many = {"dataframe_split": {"columns": FEATURES, "data": [row] * 10_000}}
    request_id = httpx.post(f"{url}/predict", json=many, timeout=60).json()["request_id"]
    counter = iter(range(10**9))
    lock = threading.Lock()

    def send(http: httpx.Client) -> int:
        with lock:
            rows = [next(counter) for _ in range(batch)]
        items = [{"request_id": request_id, "row": r, "outcome": r % 3} for r in rows]
        body = items[0] if batch == 1 else {"outcomes": items}
        return batch if http.post(f"{url}/feedback", json=body).status_code == 200 else -1

    return send


def run(repeats: int = 5, seconds: float = 8.0) -> list[Comparison]:
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-live-"))
    try:
        setup = f"from benchmarks.bench_live import prepare; import pathlib; prepare(pathlib.Path({str(scratch)!r}))"
        env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_URL", "WORKBENCH_HOME")}
        subprocess.run([sys.executable, "-c", setup], check=True, capture_output=True, env=env)
        series = interleave(
            {case: (lambda case=case: run_trial(MODULE, case, [str(scratch), str(seconds)]))
             for case in [*PREDICT_CASES, *FEEDBACK_CASES]},
            repeats,
        )  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    on, off, no_proba = series["shadow on"], series["shadow off"], series["no proba"]
    single, batched = series["feedback single"], series["feedback batch"]
    shadowed = sum(on.values("shadow_predicted"))
    dropped = sum(on.values("shadow_dropped"))
    shadow_note = (f"requests/s, 4 clients, single row, prediction logging on; p50 {on.median('p50_ms'):.2f} vs "
                   f"{off.median('p50_ms'):.2f} ms, p99 {on.median('p99_ms'):.1f} vs {off.median('p99_ms'):.1f} ms; "
                   f"shadow predictions made {shadowed:,}, dropped {dropped:,} (queue full)")  # fmt: skip
    proba_note = (f"probabilities computed by the log writer, batched once a second: p50 {off.median('p50_ms'):.2f} "
                  f"ms with, {no_proba.median('p50_ms'):.2f} ms without (computed in the request instead, on "
                  "2026-12-01: 0.66x)")  # fmt: skip
    feedback_note = (f"outcomes/s: {batched.median('per_s'):,.0f} in batches of {BATCH:,}, "
                     f"{single.median('per_s'):,.0f} one per request (p50 {single.median('p50_ms'):.2f} ms; "
                     "each request is appended and fsynced before it is answered)")  # fmt: skip
    return [
        Comparison("/predict throughput, --shadow 2 vs none", on, off, metric="rps", better="higher", target=0.8,
                   note=shadow_note),
        Comparison("/predict throughput, probabilities logged vs --no-log-proba", off, no_proba, metric="rps",
                   better="higher", note=proba_note),
        Comparison("/feedback ingestion, batches of 1,000 vs one per request", batched, single, metric="per_s",
                   better="higher", note=feedback_note),
    ]  # fmt: skip


if __name__ == "__main__":
    trial(*sys.argv[1:4])

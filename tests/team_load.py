"""Load on a team server (issue 18): client processes logging runs while another process reads.

Shared by tests/test_team_load.py and `python -m benchmarks team` (its read-latency figure), which
imports it as it imports tests/lab_server.py; it needs neither pytest nor the benchmark harness.
Every client and the reader is a real process of its own: the clients of one machine (one config
and cache folder, so one spool, as in a sweep) log a run of step metrics through the remote path
(`wb.connect`, `wb.log_metric`, `wb.end_run` waiting for the sync); the reader lists the runs
(`GET /api/v1/runs?experiment=load`) every 100 ms until told to stop, timing each request.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

EXPERIMENT = "load"
#: Seconds between the starts of two reads.
READ_EVERY_S = 0.1

# A client: connects, logs METRICS step metrics (sleeping PAUSE s every 100), ends the run and waits for
# the sync. Prints the run id at once, then {"state", "bytes", ..., "seconds"} at the end.
CLIENT = r"""
import json, os, sys, time
import workbench as wb

metrics, pause = int(os.environ["METRICS"]), float(os.environ["PAUSE"])
wb.connect(os.environ["CONNECT_URL"], token=os.environ["CONNECT_TOKEN"])
wb.set_experiment(os.environ["EXPERIMENT"])
wb.log_param("client", int(os.environ["CLIENT"]))
run_id = wb.tracking.active_run_id()
print(run_id, flush=True)
started = time.perf_counter()
for step in range(metrics):
    wb.log_metric("loss", 1.0 / (step + 1), step=step)
    if pause and step % 100 == 99:
        time.sleep(pause)
wb.end_run()
print(json.dumps({**wb.sync_state(run_id), "seconds": time.perf_counter() - started}), flush=True)
"""

# The reader: GET /api/v1/runs every READ_EVERY s until the file argv[1] exists; prints its latencies (s)
# and errors.
READER = r"""
import json, os, sys, time
import httpx

stop, every, latencies, errors = sys.argv[1], float(os.environ["READ_EVERY"]), [], []
with httpx.Client(base_url=os.environ["WB_URL"], timeout=30,
                  headers={"Authorization": "Bearer " + os.environ["WB_TOKEN"]}) as http:
    while not os.path.exists(stop):
        started = time.perf_counter()
        try:
            response = http.get("/api/v1/runs", params={"experiment": os.environ["EXPERIMENT"]})
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
        except httpx.HTTPError as exc:
            errors.append(repr(exc))
        latencies.append(time.perf_counter() - started)
        time.sleep(max(0.0, every - (time.perf_counter() - started)))
print(json.dumps({"latencies": latencies, "errors": errors}))
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any WORKBENCH_* variable (no workspace, no server), plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}, **extra}


def start_clients(url: str, token: str, machine: Path, count: int, metrics: int,
                  pause: float = 0.0) -> list[subprocess.Popen]:  # fmt: skip
    """`count` logging processes on one machine (`machine`: their shared config and cache folders)."""
    machine.mkdir(parents=True, exist_ok=True)
    script = machine / "train.py"
    script.write_text(CLIENT)
    env = clean_env(XDG_CONFIG_HOME=str(machine / "config"), XDG_CACHE_HOME=str(machine / "cache"),
                    PYTHONUNBUFFERED="1", WORKBENCH_SYNC_TIMEOUT="300", CONNECT_URL=url, CONNECT_TOKEN=token,
                    EXPERIMENT=EXPERIMENT, METRICS=str(metrics), PAUSE=str(pause))  # fmt: skip
    return [
        subprocess.Popen(
            [sys.executable, str(script)],
            cwd=machine,
            env={**env, "CLIENT": str(i)},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for i in range(count)
    ]


def finish(clients: list[subprocess.Popen], timeout: float = 300) -> dict[str, dict]:
    """Each client's outcome by run id, once all have exited. Raises on an exit code or anything on stderr."""
    deadline = time.monotonic() + timeout
    outcomes = {}
    for proc in clients:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        lines = out.strip().splitlines()
        if proc.returncode != 0 or err.strip() or len(lines) != 2:
            raise RuntimeError(f"a client exited {proc.returncode}:\n{out[-2000:]}\n{err[-4000:]}")
        outcomes[lines[0]] = json.loads(lines[1])
    return outcomes


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Load:
    """What one load round saw: each client's outcome by run id, the reader's latencies (s), the wall time."""

    outcomes: dict[str, dict]
    latencies: list[float]
    seconds: float

    def figures(self) -> dict[str, float]:
        """The reader's p50, p99 and max (ms) and how many reads it made."""
        ms = [value * 1000 for value in self.latencies]
        return {"p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 0.99), "max_ms": max(ms),
                "reads": len(ms)}  # fmt: skip

    def describe(self) -> str:
        f = self.figures()
        return (f"{len(self.outcomes)} clients: all synced in {self.seconds:.1f} s; the reader's GET /api/v1/runs "
                f"every {READ_EVERY_S * 1000:.0f} ms ({f['reads']} requests): p50 {f['p50_ms']:.0f} ms, p99 "
                f"{f['p99_ms']:.0f} ms, max {f['max_ms']:.0f} ms")  # fmt: skip


def log_while_reading(url: str, reader_token: str, writer_token: str, folder: Path, clients: int,
                      metrics: int) -> Load:  # fmt: skip
    """`clients` processes of one machine (in `folder`) log `metrics` points each while a reader polls.

    The reader starts first and reads idle a moment (the figure is about reads while writers log, and
    its first request pays for imports and the server's first query). Raises if any client fails or
    any read is answered with an error."""
    stop = folder / "stop-reading"
    folder.mkdir(parents=True, exist_ok=True)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(stop)], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=clean_env(WB_URL=url, WB_TOKEN=reader_token,
                                                                    READ_EVERY=str(READ_EVERY_S),
                                                                    EXPERIMENT=EXPERIMENT))  # fmt: skip
    try:
        time.sleep(0.5)
        started = time.perf_counter()
        outcomes = finish(start_clients(url, writer_token, folder / "machine", clients, metrics))
        seconds = time.perf_counter() - started
    finally:
        stop.touch()
        read, err = reader.communicate(timeout=60)
    if reader.returncode != 0 or err.strip():
        raise RuntimeError(f"the reader exited {reader.returncode}:\n{err[-4000:]}")
    polled = json.loads(read)
    if polled["errors"]:
        raise RuntimeError(f"the reader got {len(polled['errors'])} errors: {polled['errors'][:5]}")
    return Load(outcomes, polled["latencies"], seconds)

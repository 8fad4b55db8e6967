"""Model server under a bounded load on loopback while `production` flips between two versions.

The promise: a hot swap never drops or fails a request, because a request takes one reference
to a fully loaded model for its whole life. The server is a real `workbench serve` process; a
few client threads (keep-alive connections) send single-row predictions back to back for
WORKBENCH_LOAD_SECONDS (default 20 s here; the issue's full run is 60 s:
`WORKBENCH_LOAD_SECONDS=60 pytest tests/reliability/test_server_load.py -s`), while this process
moves the alias 10 times. Latency p50/p99 and the request count are printed, not asserted.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import threading
import time

import httpx
import pytest
from conftest import VENV_BIN
from model_fixtures import train_run

import workbench as wb

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]
CLIENTS = 3
FLIPS = 10


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_alias_flips_under_load_fail_no_request(ws, wine_frame):
    seconds = float(os.environ.get("WORKBENCH_LOAD_SECONDS", "20"))
    wb.snapshot("wine", wine_frame)
    first, second = train_run(C=0.01), train_run(C=10.0)
    wb.promote(first, "wine")
    wb.promote(second, "wine", alias="staging")
    port = _free_port()
    env = dict(os.environ, WORKBENCH_HOME=str(ws.root), OMP_NUM_THREADS="1")
    command = [str(VENV_BIN / "workbench"), "serve", "wine@production", "--port", str(port), "--no-log"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.stderr else ""
            time.sleep(0.2)

        rows = wine_frame[FEATURES].head(20).to_dict(orient="records")
        latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
        failures: list[str] = []
        versions: set[int] = set()
        stop = threading.Event()

        def client(index: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                n = 0
                while not stop.is_set():
                    started = time.perf_counter()
                    try:
                        answer = http.post("/predict", json={"records": [rows[n % len(rows)]]})
                    except httpx.HTTPError as exc:
                        failures.append(f"{type(exc).__name__}: {exc}")
                        continue
                    latencies[index].append(time.perf_counter() - started)
                    if answer.status_code != 200:
                        failures.append(f"{answer.status_code}: {answer.text[:200]}")
                    else:
                        versions.add(answer.json()["version"])
                    n += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for flip in range(FLIPS):
            time.sleep(seconds / (FLIPS + 1))
            wb.set_alias("wine", "production", 2 if flip % 2 == 0 else 1, reason=f"load flip {flip}")
        time.sleep(max(0.0, seconds - (time.monotonic() - began)))
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        elapsed = time.monotonic() - began
        deadline = time.monotonic() + 15  # the last flip may have landed just before the load stopped
        while (swaps := httpx.get(f"{url}/health").json())["model"] != "wine@1" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=30)

    ms = sorted(v * 1000 for per_client in latencies for v in per_client)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    print(
        f"\n[server load] {len(ms)} requests in {elapsed:.1f} s ({len(ms) / elapsed:.0f}/s, {CLIENTS} clients), "
        f"{FLIPS} alias flips, failed: {len(failures)}; latency p50 {statistics.median(ms):.1f} ms, "
        f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms; served versions {sorted(versions)}; now {swaps['model']}"
    )
    assert not failures, failures[:5]
    assert versions == {1, 2}, "the server never swapped to the other version"
    assert swaps["model"] == "wine@1"  # the last flip (odd count) points production back at version 1

"""Load: 16 writer processes logging 1,000 metrics each while a reader lists runs every 100 ms.

The promise: logging is a file append that never waits on the catalog, and readers fold the
event files in short transactions; so under load nothing is lost (all 16,000 points end up in
`metric_history`), no process ever sees a lock error, and the reader stays responsive. The
reader's latency is printed (run pytest with -s to see it) rather than asserted tightly, because
this 2-core CI machine is shared with other test processes.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import workbench as wb

WRITERS = 16
POINTS = 1000

WRITER = textwrap.dedent(
    """
    import os, sys, time
    import workbench as wb

    worker, points, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    wb.set_experiment("load")
    wb.log_param("worker", worker)
    print(wb.active_run_id(), flush=True)
    while not os.path.exists(go):  # start logging together, once every interpreter is warm
        time.sleep(0.02)
    for step in range(points):
        wb.log_metric("m", worker * 100000 + step, step=step)
        if step % 50 == 49:
            time.sleep(0.2)  # a training loop's pace: ~4 s of logging, so the reader overlaps it
    wb.end_run()
    """
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.slow
def test_sixteen_writers_and_a_polling_reader_lose_nothing(ws, tmp_path):
    env = dict(os.environ, WORKBENCH_HOME=str(ws.root), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    latencies: list[float] = []
    reader_errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                wb.runs(experiment="load")
            except BaseException as exc:  # noqa: BLE001 - any error here is a finding
                reader_errors.append(exc)
            latencies.append(time.perf_counter() - started)
            stop.wait(0.1)

    go = tmp_path / "go"
    began = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(n), str(POINTS), str(go)], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in range(WRITERS)
    ]  # fmt: skip
    run_ids = [proc.stdout.readline().strip() for proc in procs]  # each writer's run exists and is warm
    warm = time.monotonic() - began
    poller = threading.Thread(target=reader, name="runs-reader", daemon=True)
    poller.start()
    logging_began = time.monotonic()
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append((proc.returncode, out, err))
    elapsed = time.monotonic() - logging_began
    time.sleep(0.3)  # one more poll after the last writer ended
    stop.set()
    poller.join(timeout=60)

    for code, _out, err in results:
        assert code == 0, err
        assert "StoreBusy" not in err and "lock" not in err.lower(), err
    assert not reader_errors, reader_errors
    history = wb.metric_history(run_ids, "m")
    assert len(history) == WRITERS * POINTS
    for n, run_id in enumerate(run_ids):
        values = history[history["run_id"] == run_id]["value"].tolist()
        assert values == [n * 100000 + step for step in range(POINTS)]
    table = wb.runs(experiment="load")
    assert sorted(table["run_id"]) == sorted(run_ids) and set(table["status"]) == {"finished"}

    ms = [value * 1000 for value in latencies]
    print(
        f"\n[load] {WRITERS} writers started in {warm:.1f} s, logged {POINTS} metrics each in {elapsed:.1f} s; "
        f"reader: {len(ms)} polls, "
        f"p50 {statistics.median(ms):.1f} ms, p99 {_percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
    )
    assert len(ms) >= 5

"""Many processes on one workspace at once, and kill -9 in the middle of a registration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from workbench import blobs
from workbench.catalog import connect

WORKER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from workbench.audit import record
    from workbench.catalog import transaction
    from workbench.snapshots import register
    from workbench.workspace import open_workspace

    worker, count = int(sys.argv[1]), int(sys.argv[2])
    ws = open_workspace()
    for i in range(count):
        frame = pd.DataFrame({"worker": [worker] * 50, "i": [i] * 50, "x": range(50)})
        register("shared", frame, ws=ws)
        register(f"own-{worker}", frame, ws=ws)
        with transaction(ws) as con:
            record(con, "test.write", f"worker-{worker}", {"i": i})
    print("done", worker)
    """
)


@pytest.mark.slow
def test_eight_processes_lose_nothing(ws):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(n), "6"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "lock" not in err.lower()
    with connect(ws) as con:
        shared = [
            v for (v,) in con.execute("select version from snapshots where name = 'shared' order by version").fetchall()
        ]
        own = con.execute("select count(*) from snapshots where name like 'own-%'").fetchone()[0]
        audit_rows = con.execute("select count(*) from audit where action = 'test.write'").fetchone()[0]
        registered = con.execute("select count(*) from audit where action = 'snapshot.registered'").fetchone()[0]
    assert shared == list(range(1, 49))  # 8 workers x 6 distinct frames, no gaps or duplicates
    assert own == 48 and audit_rows == 48 and registered == 96


KILLED = textwrap.dedent(
    """
    import sys
    from workbench.snapshots import register
    print("ready", flush=True)
    register("big", sys.argv[1])
    print("done", flush=True)
    """
)


def _start_victim(path) -> subprocess.Popen:
    """The victim, once its imports are done: kill times count from the registration itself,
    not from an interpreter start-up whose length varies with the machine's load."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], env=os.environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    return proc


def _invariants(ws) -> int:
    with connect(ws) as con:
        rows = con.execute("select name, version, blob, row_count from snapshots").fetchall()
        audit_rows = con.execute("select count(*) from audit").fetchone()[0]
    assert audit_rows == len(rows)
    for _name, _version, blob, row_count in rows:
        path = blobs.blob_path(ws, blob)
        assert path.is_file()
        assert duckdb.connect().execute("select count(*) from read_parquet(?)", [str(path)]).fetchone()[0] == row_count
    return len(rows)


@pytest.mark.slow
def test_kill_during_registration_leaves_no_half_snapshot(ws, tmp_path):
    big = tmp_path / "big.csv"
    duckdb.connect().execute(
        "copy (select i, i * 0.5 as x, 'label-' || (i % 97) as s, random() as r "
        f"from range(1500000) t(i)) to '{big}' (header)"
    )
    proc = _start_victim(big)
    start = time.monotonic()
    out, err = proc.communicate(timeout=300)
    full = time.monotonic() - start
    assert proc.returncode == 0 and "done" in out, err
    assert _invariants(ws) == 1
    with connect(ws) as con:
        con.execute("delete from snapshots")
        con.execute("delete from audit")
    outcomes = []
    for fraction in (0.15, 0.35, 0.55, 0.7, 0.8, 0.9, 0.95):
        proc = _start_victim(big)
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        outcomes.append(("done" not in out, _invariants(ws)))  # (killed mid-registration, snapshots after)
    assert all(n in (0, 1) for _, n in outcomes), outcomes
    assert any(mid_write for mid_write, _ in outcomes), outcomes  # some kill hit the registration itself
    subprocess.run([sys.executable, "-c", KILLED, str(big)], check=True, env=os.environ, capture_output=True)
    assert _invariants(ws) == 1

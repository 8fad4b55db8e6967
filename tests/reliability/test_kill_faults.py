"""kill -9 in the middle of a write: the store is as before or as after, never in between.

Three writes are interrupted at random moments (seeded, so a failure can be replayed): a
snapshot registration of a biggish CSV, `log_artifact` of a big file, and `promote`. Each
victim is a real subprocess that says "ready" once its imports are done, so the kill lands in
the write itself rather than in the interpreter start-up. After every kill the workspace must
pass every invariant: `workbench doctor` reports no error, every blob the catalog names exists,
snapshot and model versions are dense (1..n, no gaps, no half rows), aliases point at existing
versions and the alias file servers watch agrees with the catalog.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import duckdb
import pytest

from workbench import blobs
from workbench.catalog import connect
from workbench.doctor import referenced_blobs, run_checks
from workbench.models.registry import ALIAS_FILE, model_dir
from workbench.runs.ingest import index_runs

SEED = int(os.environ.get("WORKBENCH_FAULT_SEED", "8"))
KILLS = 3
MAX_KILLS = KILLS + 4  # more seeded moments, only until one kill has landed mid-write

SNAPSHOT_VICTIM = textwrap.dedent(
    """
    import sys
    from workbench.snapshots import register
    print("ready", flush=True)
    register("big", sys.argv[1])
    print("done", flush=True)
    """
)

ARTIFACT_VICTIM = textwrap.dedent(
    """
    import sys, time
    import workbench as wb
    wb.log_param("attempt", sys.argv[2])
    time.sleep(0.8)  # the background flusher writes buffered events every 0.5 s (a kill loses at most that)
    print("ready", flush=True)
    wb.log_artifact(sys.argv[1], "data/big.bin")
    print("done", flush=True)
    wb.end_run()
    """
)

PROMOTE_VICTIM = textwrap.dedent(
    """
    import sys
    import workbench as wb
    first, second = sys.argv[1], sys.argv[2]
    print("ready", flush=True)
    for i in range(int(sys.argv[3])):
        wb.promote(first if i % 2 == 0 else second, "wine", alias="production", reason=f"flip {i}")
        wb.promote(second, "wine", alias="staging")
        print("done", i, flush=True)
    """
)


@pytest.fixture(autouse=True)
def _fast_reaper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed runs count as dead after 1 s without a heartbeat (in this process, which reads)."""
    monkeypatch.setenv("WORKBENCH_STALE_AFTER", "1")


def _env(ws) -> dict[str, str]:
    return dict(os.environ, WORKBENCH_HOME=str(ws.root), WORKBENCH_STALE_AFTER="1", OMP_NUM_THREADS="1")


def _start(ws, script: str, *args: str) -> tuple[subprocess.Popen, float]:
    proc = subprocess.Popen([sys.executable, "-c", script, *args], env=_env(ws), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    return proc, time.monotonic()


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err


def _timed_full_run(ws, script: str, *args: str) -> float:
    proc, started = _start(ws, script, *args)
    assert proc.stdout is not None
    proc.stdout.readline()  # "done"
    elapsed = time.monotonic() - started
    _finish(proc)
    return elapsed


def _kill_at(ws, script: str, delay: float, *args: str, writes: int = 1) -> bool:
    """Start the victim, kill -9 it `delay` s after it is ready; True if the kill landed mid-write.

    The victim prints "ready" right before its write and "done" right after each of its `writes`
    writes: a kill before the last "done" interrupted a write (a kill after it proves nothing).
    """
    proc, _ = _start(ws, script, *args)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _err = proc.communicate(timeout=60)
    return sum(1 for line in out.splitlines() if line.startswith("done")) < writes


def _kill_series(ws, kill: Callable[[int, random.Random], bool], key: str,
                 kills: int = KILLS) -> list[tuple[bool, int]]:  # fmt: skip
    """`kills` kills at seeded moments, then more (up to MAX_KILLS) until one landed mid-write.

    Returns (killed mid-write, `key` count after the kill) per kill; the invariants are checked
    after each one. `kill(attempt, rng)` starts a victim and kills it, like `_kill_at`.
    """
    rng = random.Random(SEED)
    outcomes: list[tuple[bool, int]] = []
    while len(outcomes) < kills or not any(mid_write for mid_write, _ in outcomes):
        assert len(outcomes) < MAX_KILLS, f"no kill of {len(outcomes)} landed mid-write: {outcomes}"
        mid_write = kill(len(outcomes), rng)
        outcomes.append((mid_write, check_invariants(ws)[key]))
    return outcomes


def _settled(ws, timeout: float = 30.0) -> None:
    """Until no run is queued or running: a killed run is reaped by the first read after its
    heartbeat is WORKBENCH_STALE_AFTER (1 s) old."""
    deadline = time.monotonic() + timeout
    while True:
        index_runs(ws)
        with connect(ws) as con:
            stuck = con.execute("SELECT list(run_id) FROM runs WHERE status IN ('queued', 'running')").fetchone()[0]
        if not stuck:
            return
        assert time.monotonic() < deadline, f"runs never reaped: {stuck}"
        time.sleep(0.1)


def check_invariants(ws) -> dict[str, int]:
    """Every promise of "as before or as after", checked on the workspace as it is now."""
    _settled(ws)
    errors = [f for f in run_checks(ws) if f.severity == "error"]
    assert not errors, errors
    with connect(ws) as con:
        for blob_id in referenced_blobs(con):
            assert blobs.exists(ws, blob_id), f"catalog names blob {blob_id} that is not in the store"
        for name, versions in con.execute(
            "SELECT name, list(version ORDER BY version) FROM snapshots GROUP BY name"
        ).fetchall():
            assert versions == list(range(1, len(versions) + 1)), (name, versions)
        snapshots = con.execute("SELECT count(*) FROM snapshots").fetchone()[0]
        registered = con.execute("SELECT count(*) FROM audit WHERE action = 'snapshot.registered'").fetchone()[0]
        assert registered == snapshots  # the audit row commits with the snapshot row, or neither
        for name, versions in con.execute(
            "SELECT name, list(version ORDER BY version) FROM model_versions GROUP BY name"
        ).fetchall():
            assert versions == list(range(1, len(versions) + 1)), (name, versions)
        created = con.execute("SELECT count(*) FROM audit WHERE action = 'model.version.created'").fetchone()[0]
        model_versions = con.execute("SELECT count(*) FROM model_versions").fetchone()[0]
        assert created == model_versions
        dangling = con.execute(
            "SELECT a.name, a.alias, a.version FROM model_aliases a LEFT JOIN model_versions v "
            "ON v.name = a.name AND v.version = a.version WHERE v.version IS NULL"
        ).fetchall()
        assert not dangling, dangling
        moves = con.execute("SELECT count(*) FROM model_alias_history").fetchone()[0]
        audited_moves = con.execute("SELECT count(*) FROM audit WHERE action = 'alias.moved'").fetchone()[0]
        assert moves == audited_moves
        aliases = {
            name: dict(con.execute("SELECT alias, version FROM model_aliases WHERE name = ?", [name]).fetchall())
            for (name,) in con.execute("SELECT name FROM models").fetchall()
        }
        artifacts = con.execute(
            "SELECT count(*) FROM run_artifacts WHERE kind = 'file'",
        ).fetchone()[0]
        stuck = con.execute("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')").fetchone()[0]
    assert stuck == 0
    for name, expected in aliases.items():
        path = model_dir(ws, name) / ALIAS_FILE
        if path.exists():
            on_disk = json.loads(path.read_text())["aliases"]
            assert on_disk == expected, f"{path} says {on_disk}, the catalog says {expected}"
    return {"snapshots": snapshots, "model_versions": model_versions, "moves": moves, "artifacts": artifacts}


@pytest.mark.slow
def test_kill_during_snapshot_registration(ws, tmp_path):
    big = tmp_path / "big.csv"
    duckdb.connect().execute(
        "copy (select i, i * 0.5 as x, 'label-' || (i % 97) as s, random() as r "
        f"from range(400000) t(i)) to '{big}' (header)"
    )
    full = _timed_full_run(ws, SNAPSHOT_VICTIM, str(big))
    assert check_invariants(ws)["snapshots"] == 1
    with connect(ws) as con:  # start over from "before", so each kill can land on either side
        con.execute("DELETE FROM snapshots")
        con.execute("DELETE FROM audit")
    outcomes = _kill_series(
        ws, lambda attempt, rng: _kill_at(ws, SNAPSHOT_VICTIM, rng.uniform(0.05, 1.1) * full, str(big)), "snapshots"
    )
    assert all(n in (0, 1) for _, n in outcomes), outcomes
    print(f"\n[kill] snapshot registration ({full:.2f} s): (killed mid-write, snapshots after) = {outcomes}")
    _timed_full_run(ws, SNAPSHOT_VICTIM, str(big))
    assert check_invariants(ws)["snapshots"] == 1


@pytest.mark.slow
def test_kill_during_log_artifact(ws, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        for _ in range(64):
            handle.write(os.urandom(1 << 20))
    full = _timed_full_run(ws, ARTIFACT_VICTIM, str(big), "full")
    outcomes = _kill_series(
        ws, lambda attempt, rng: _kill_at(ws, ARTIFACT_VICTIM, rng.uniform(0.0, 1.1) * full, str(big), str(attempt)),
        "artifacts",
    )
    print(f"\n[kill] log_artifact of 64 MiB ({full:.2f} s): (killed mid-write, artifacts after) = {outcomes}")
    # Each killed run kept what it logged before the kill (its param) and ended `killed`, not stuck.
    import workbench as wb

    table = wb.runs(order_by="created_at")
    assert len(table) == len(outcomes) + 1 and set(table["status"]) <= {"finished", "killed"}
    assert table["params.attempt"].tolist() == ["full", *map(str, range(len(outcomes)))]
    interrupted = [str(attempt) for attempt, (mid_write, _) in enumerate(outcomes) if mid_write]
    assert set(table.loc[table["params.attempt"].isin(interrupted), "status"]) == {"killed"}
    scratch = list(ws.tmp_dir.iterdir()) if ws.tmp_dir.is_dir() else []
    stored = {p.name for p in ws.blobs_dir.rglob("*") if p.is_file()}
    assert all(blobs.blob_path(ws, b).stat().st_size == big.stat().st_size for b in stored if b.endswith(".bin"))
    print(f"[kill] scratch files left by kills (removed by doctor --fix after the grace period): {len(scratch)}")


@pytest.mark.slow
def test_kill_during_promotion(ws, wine_frame):
    from model_fixtures import train_run

    import workbench as wb

    wb.snapshot("wine", wine_frame)
    first, second = train_run(C=0.01), train_run(C=10.0)
    full = _timed_full_run(ws, PROMOTE_VICTIM, first, second, "3") / 3  # one flip + one staging move
    check_invariants(ws)
    outcomes = _kill_series(
        ws, lambda attempt, rng: _kill_at(ws, PROMOTE_VICTIM, rng.uniform(0.0, 3.0) * full, first, second, "50",
                                          writes=50), "moves", kills=KILLS + 1,
    )  # fmt: skip
    print(f"\n[kill] promote ({full:.2f} s per flip): (killed mid-write, alias moves after) = {outcomes}")
    versions = sorted(v["version"] for v in wb.get_model("wine")["versions"])
    assert versions == [1, 2]  # re-promoting a run reuses its version: never a third, never a gap
    served = wb.get_model_version("wine@production")
    assert served.run_id in (first, second)

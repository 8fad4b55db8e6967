"""Losing the catalog file: runs come back from their folders, and the rest is reported as lost.

The catalog is an index of the run folders, so deleting (or corrupting) `catalog.duckdb` must
not cost a single run, param or metric point. Snapshot and model metadata live only in the
catalog; the rebuild cannot invent them and has to say so instead of pretending.
"""

from __future__ import annotations

import pandas as pd
import pytest

import workbench as wb
from workbench.catalog import connect
from workbench.catalog.connection import forget_migrations
from workbench.doctor import run_checks
from workbench.runs.rebuild import describe, rebuild_catalog


def _log_runs(count: int = 3) -> list[str]:
    """Interactive runs in this process, each with params, a metric series and a text artifact."""
    ids = []
    for n in range(count):
        wb.set_experiment(f"exp{n % 2}")
        wb.log_param("n", n)
        wb.log_param("name", f"run-{n}")
        for step in range(50):
            wb.log_metric("loss", 1.0 / (step + 1 + n), step=step)
        wb.log_text(f"notes {n}", "notes.txt")
        ids.append(wb.active_run_id())
        wb.end_run()
    return ids


def _state(ids: list[str]) -> dict:
    table = wb.runs(order_by="run_id")
    return {
        "runs": table[["run_id", "experiment", "status"]].to_dict(orient="records"),
        "params": table[["params.n", "params.name"]].to_dict(orient="records"),
        "history": wb.metric_history(ids, "loss")["value"].round(9).tolist(),
        "artifacts": [[a.name for a in wb.get_run(r).artifacts] for r in ids],
    }


def test_deleted_catalog_is_rebuilt_from_run_folders(ws):
    wb.snapshot("wine", pd.DataFrame({"a": [1, 2, 3]}))
    ids = _log_runs()
    before = _state(ids)
    assert len(before["history"]) == 150

    ws.catalog_path.unlink()
    forget_migrations()
    report = rebuild_catalog(ws)

    assert report["moved_to"] is None and report["runs_recovered"] == report["run_folders"] == 3
    assert report["rows"]["run_metrics"] == 150
    assert _state(ids) == before
    # The snapshot cannot come back: its name and version lived only in the catalog. Say so.
    assert len(report["unrecovered_snapshot_blobs"]) == 1
    assert any("snapshot data file" in line for line in report["not_recovered"])
    assert any("NOT recovered" in line for line in describe(report))
    with pytest.raises(wb.NotFoundError):
        wb.get_snapshot("wine")
    assert not [f for f in run_checks(ws) if f.severity == "error"], run_checks(ws)


def test_corrupt_catalog_is_moved_aside_and_rebuilt(ws):
    ids = _log_runs(2)
    before = _state(ids)
    ws.catalog_path.write_bytes(b"this is not a duckdb file\x00" * 1000)
    forget_migrations()

    report = rebuild_catalog(ws)

    moved = ws.root / report["moved_to"].rsplit("/", 1)[1]
    assert moved.is_file() and moved.read_bytes().startswith(b"this is not")  # kept for forensics, not deleted
    assert report["old_catalog_problem"]
    assert _state(ids) == before


def test_a_block_failing_its_checksum_is_a_clear_error_then_a_rebuild(ws, cli):
    """The damage a crash mid-checkpoint has left once (a block whose checksum no longer matches):
    every command says what is wrong and what to run, without a traceback; the rebuild recovers."""
    ids = _log_runs(2)
    before = _state(ids)
    with open(ws.catalog_path, "r+b") as catalog:  # flip bytes inside the first block after the headers
        catalog.seek(12288 + 64)
        damaged = bytes(b ^ 0xFF for b in catalog.read(16))
        catalog.seek(12288 + 64)
        catalog.write(damaged)
    forget_migrations()

    listed = cli("runs", "list")
    assert listed.returncode == 2 and "Traceback" not in listed.stderr, listed.stderr
    assert "is damaged and cannot be opened" in listed.stderr and "doctor --rebuild-catalog" in listed.stderr
    rebuilt = cli("doctor", "--rebuild-catalog")  # exit 1: it says what could not be recovered (the audit log)
    assert rebuilt.returncode == 1 and "NOT recovered: the audit log" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
    forget_migrations()
    assert _state(ids) == before


def test_readable_catalog_keeps_snapshots_models_and_audit(ws):
    """A rebuild of a catalog that still opens copies what only it knows (snapshots, models, audit)."""
    wb.snapshot("wine", pd.DataFrame({"a": [1, 2, 3]}))
    ids = _log_runs(2)
    with connect(ws) as con:  # damage the run index only, as a half-applied manual edit would
        con.execute("DELETE FROM run_metrics")
        audit_rows = con.execute("SELECT count(*) FROM audit").fetchone()[0]

    report = rebuild_catalog(ws)

    assert report["salvaged"]["snapshots"] == 1 and report["salvaged"]["audit"] == audit_rows
    assert wb.get_snapshot("wine@1").row_count == 3
    assert wb.load_snapshot("wine")["a"].tolist() == [1, 2, 3]
    assert len(wb.metric_history(ids, "loss")) == 100
    assert not report["unrecovered_snapshot_blobs"]

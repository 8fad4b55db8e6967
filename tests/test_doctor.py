"""`workbench doctor` finds damage and repairs only what is safe."""

from __future__ import annotations

import json
import os
import time

import workbench as wb
from workbench import blobs
from workbench.doctor import GRACE_SECONDS, run_checks


def _age(path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def by_check(findings):
    return {f.check: f for f in findings}


def test_healthy_workspace(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    findings = run_checks(ws)
    assert all(f.severity == "ok" for f in findings), findings


def test_orphans_and_scratch_are_removed_only_when_old(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    young = blobs.put_bytes(ws, b"in progress")
    old = blobs.put_bytes(ws, b"left by a killed process")
    _age(blobs.blob_path(ws, old), GRACE_SECONDS + 60)
    stale = ws.tmp_dir / "tmpabc.parquet"
    stale.write_bytes(b"x")
    _age(stale, GRACE_SECONDS + 60)
    found = by_check(run_checks(ws))
    assert found["orphan blobs"].severity == "warning" and "2 unreferenced" in found["orphan blobs"].message
    assert found["scratch files"].fixable
    by_check(run_checks(ws, fix=True))
    assert blobs.exists(ws, young) and not blobs.exists(ws, old)
    assert not stale.exists()
    assert wb.load_snapshot("wine").shape == wine_frame.shape  # registered data untouched


def test_missing_data_file_is_an_error(ws, wine_frame, cli):
    snap = wb.snapshot("wine", wine_frame)
    blobs.blob_path(ws, snap.blob).unlink()
    found = by_check(run_checks(ws))
    assert found["snapshot data"].severity == "error" and "wine@1" in found["snapshot data"].message
    proc = cli("doctor", "--json")
    assert proc.returncode == 1
    assert any(f["severity"] == "error" for f in json.loads(proc.stdout))

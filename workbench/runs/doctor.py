"""Doctor checks for runs: stuck runs, runs missing from the catalog, missing or damaged files
(artifacts, executed notebooks, notebook sources).

Registered first, because folding pending run events is what makes the catalog complete; the
orphan-blob check must never see an artifact of a not-yet-indexed run as unreferenced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from workbench import blobs
from workbench.catalog import connect
from workbench.doctor import Finding, check, damaged_files, damaged_message
from workbench.runs.ids import RUN_ID
from workbench.runs.ingest import ingest_all, ingest_pending
from workbench.workspace import Workspace


@check("runs", first=True)
def _runs(ws: Workspace, fix: bool) -> Iterator[Finding]:
    ingest_pending(ws)  # also marks runs whose process died as killed
    folders = {e.name for e in os.scandir(ws.runs_dir) if RUN_ID.match(e.name)} if ws.runs_dir.is_dir() else set()
    with connect(ws) as con:
        indexed = {r for (r,) in con.execute("SELECT run_id FROM runs").fetchall()}
        stuck = con.execute("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')").fetchone()[0]
        labelled = con.execute(
            "SELECT blob, 'artifact ' || name || ' of run ' || run_id FROM run_artifacts "
            "UNION ALL SELECT output_blob, 'executed notebook of run ' || run_id FROM runs "
            "WHERE output_blob IS NOT NULL "
            "UNION ALL SELECT notebook_blob, 'notebook source of run ' || run_id FROM runs "
            "WHERE notebook_blob IS NOT NULL ORDER BY 2"
        ).fetchall()
    referenced = sorted({(blob,) for blob, _ in labelled})
    missing_in_catalog = folders - indexed
    if missing_in_catalog:
        if fix:
            ingest_all(ws)
        yield Finding("runs", "warning", f"{len(missing_in_catalog)} run folder(s) not in the catalog",
                      fixable=True, fixed=fix)  # fmt: skip
    missing_files = [b for (b,) in referenced if not blobs.exists(ws, b)]
    if missing_files:
        yield Finding("runs", "error", f"{len(missing_files)} run artifact file(s) missing from the blob store")
    damaged = damaged_files(ws, labelled)
    if damaged:
        yield Finding("runs", "error", damaged_message(damaged, "run"))
    active = f", {stuck} queued or running" if stuck else ""
    yield Finding("runs", "ok", f"{len(indexed)} runs indexed{active}")

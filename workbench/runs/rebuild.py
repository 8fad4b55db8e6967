"""Rebuilding a lost or broken catalog from what the workspace folder still holds.

The catalog is an index: runs live in their own folders (`runs/<id>/events.jsonl`) and can be
re-indexed from those alone. Snapshot, model and audit records, however, exist *only* in the
catalog (a snapshot blob is a Parquet file named by its content hash, with no name or version in
it), so they cannot be re-created from the files. This module therefore does the honest thing:

1. move the old catalog aside (`catalog.duckdb.broken-<timestamp>`, never deleted, so it can be
   handed to DuckDB tools or support later),
2. create a fresh catalog and re-index every run folder (`ingest_all`),
3. if the old file can still be opened, copy the non-run tables (snapshots, models, aliases,
   audit, team server users) across, best effort, table by table (every column both schemas have, so snapshot rows
   keep the `file_sha256` their reads are checked against; rows from a catalog older than that
   column get NULL and are checked by their data digest until `workbench doctor --fix` records
   the hash),
4. report what came back and, as clearly, what did not (snapshot data files and model folders
   the new catalog knows nothing about).

Used by `workbench doctor --rebuild-catalog`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import duckdb

from workbench import blobs
from workbench.catalog import connect
from workbench.catalog.connection import _is_lock_conflict, forget_migrations
from workbench.errors import StoreBusyError
from workbench.runs.ids import RUN_ID
from workbench.runs.ingest import RUN_TABLES, ingest_all, pending_dir
from workbench.workspace import Workspace

#: Tables whose rows exist only in the catalog (not rebuilt from run folders), copied if readable.
#: Order matters for readability of the report only; there are no foreign keys between them.
CATALOG_ONLY_TABLES = (
    "snapshots",
    "models",
    "model_versions",
    "model_aliases",
    "model_alias_history",
    "audit",
    "server_users",
)


def _check_not_in_use(path: Path) -> str | None:
    """Refuse to move a catalog another process holds open; return why the file is unreadable.

    A catalog that opens fine is closed again at once (returns None). One that DuckDB cannot
    read returns the error text: that is the "broken" case the rebuild is for.
    """
    if not path.exists():
        return "missing"
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if _is_lock_conflict(exc):
            raise StoreBusyError(
                f"The catalog {path} is open in another process; it cannot be rebuilt now.",
                "Stop model servers, JupyterLab and running notebooks of this workspace, then try again.",
            ) from exc
        return str(exc).strip().splitlines()[0]
    except duckdb.Error as exc:
        return str(exc).strip().splitlines()[0]
    con.close()
    return None


def _move_aside(ws: Workspace) -> Path | None:
    """Rename the catalog (and its WAL) to `catalog.duckdb.broken-<ts>`; None if there was none."""
    path = ws.catalog_path
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.broken-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = path.with_name(f"{path.name}.broken-{stamp}-{suffix}")
    os.replace(path, target)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        os.replace(wal, target.with_name(target.name + ".wal"))
    return target


def _salvage(ws: Workspace, old: Path) -> tuple[dict[str, int], list[str]]:
    """Copy catalog-only tables from the old file, table by table; (rows copied, problems).

    One connection holds the old file attached read-only for the whole copy; each table is its
    own transaction, so one damaged table does not cost the others.
    """
    copied: dict[str, int] = {}
    problems: list[str] = []
    with connect(ws) as con:
        try:
            con.execute(f"ATTACH '{str(old).replace(chr(39), chr(39) * 2)}' AS broken (READ_ONLY)")
        except Exception as exc:  # any DuckDB failure: the old file is unreadable, nothing to salvage
            return copied, [f"the old catalog could not be opened ({str(exc).strip().splitlines()[0]})"]
        try:
            for table in CATALOG_ONLY_TABLES:
                try:
                    copied_rows = _copy_table(con, table)
                except Exception as exc:  # a damaged table: keep going with the others
                    problems.append(f"table {table}: {str(exc).strip().splitlines()[0]}")
                    continue
                if copied_rows is None:
                    problems.append(f"table {table}: not in the old catalog")
                else:
                    copied[table] = copied_rows
        finally:
            con.execute("DETACH broken")
    return copied, problems


def _copy_table(con: duckdb.DuckDBPyConnection, table: str) -> int | None:
    """Replace `table` with the old catalog's rows (shared columns only); None if it had none."""
    query = (
        "SELECT column_name, coalesce(column_default, '') FROM information_schema.columns WHERE table_catalog = ? "
        "AND table_schema = 'main' AND table_name = ? ORDER BY ordinal_position"
    )
    current = con.execute("SELECT current_database()").fetchone()[0]
    new_cols = con.execute(query, [current, table]).fetchall()
    old_cols = {c for (c, _) in con.execute(query, ["broken", table]).fetchall()}
    # Columns filled from a sequence (audit ids) are renumbered in the old order instead of copied:
    # the fresh sequence starts at 1, so copied ids would collide with the next insert.
    serial = [c for c, default in new_cols if "nextval" in default.lower() and c in old_cols]
    columns = [c for c, default in new_cols if c in old_cols and c not in serial]
    if not columns:
        return None
    names = ", ".join(f'"{c}"' for c in columns)
    order = f" ORDER BY {', '.join(chr(34) + c + chr(34) for c in serial)}" if serial else ""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f'DELETE FROM "{table}"')
        con.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM broken.main."{table}"{order}')
        rows = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return rows


def _unknown_files(ws: Workspace) -> dict[str, Any]:
    """What lies in the workspace that the fresh catalog does not describe."""
    with connect(ws) as con:
        known_snapshot_blobs = {b for (b,) in con.execute("SELECT blob FROM snapshots").fetchall()}
        known_models = {m for (m,) in con.execute("SELECT name FROM models").fetchall()}
    parquet = sorted(b for b in blobs.iter_blob_ids(ws) if b.endswith(".parquet") and b not in known_snapshot_blobs)
    models_root = ws.root / "models"
    model_folders = sorted(p.name for p in models_root.iterdir() if p.is_dir()) if models_root.is_dir() else []
    lost_models = []
    for name in model_folders:
        if name in known_models:
            continue
        try:
            aliases = json.loads((models_root / name / "aliases.json").read_text()).get("aliases", {})
        except (OSError, ValueError):
            aliases = {}
        lost_models.append({"name": name, "aliases": aliases})
    return {"snapshot_blobs": parquet, "models": lost_models}


def rebuild_catalog(ws: Workspace) -> dict[str, Any]:
    """Replace the workspace's catalog with a fresh one rebuilt from the run folders.

    Returns a report: where the old catalog went, how many runs were re-indexed, which tables
    could be salvaged from the old file, and what could not be recovered (with the reason), so
    the CLI can print it and a user knows exactly what to re-register.
    """
    path = ws.catalog_path
    why_broken = _check_not_in_use(path)
    moved = _move_aside(ws)
    forget_migrations()  # the next connection must create the schema in the new file
    with connect(ws):
        pass
    folders = sorted(e.name for e in os.scandir(ws.runs_dir) if RUN_ID.match(e.name)) if ws.runs_dir.is_dir() else []
    salvaged: dict[str, int] = {}
    problems: list[str] = []
    if moved is not None and why_broken is None:
        salvaged, problems = _salvage(ws, moved)
    elif moved is not None:
        problems.append(f"the old catalog is unreadable ({why_broken}); nothing could be copied from it")
    ingest_all(ws)
    # Runs still running keep their pending markers; re-mark every folder so the next reader
    # reaps the ones whose process is gone (the old markers may have been lost with the catalog).
    pending = pending_dir(ws)
    pending.mkdir(exist_ok=True)
    with connect(ws) as con:
        indexed = {r for (r,) in con.execute("SELECT run_id FROM runs").fetchall()}
        open_runs = [r for (r,) in con.execute("SELECT run_id FROM runs WHERE status IN ('queued', 'running')")
                     .fetchall()]  # fmt: skip
        counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in RUN_TABLES}
    for run_id in open_runs:
        (pending / run_id).touch()
    unreadable = [r for r in folders if r not in indexed]
    unknown = _unknown_files(ws)
    not_recovered: list[str] = []
    if unreadable:
        not_recovered.append(
            f"{len(unreadable)} run folder(s) without a readable start event: {', '.join(unreadable[:10])}"
        )
    if unknown["snapshot_blobs"]:
        not_recovered.append(
            f"{len(unknown['snapshot_blobs'])} snapshot data file(s) in the blob store have no name or version "
            "(that metadata lived only in the catalog); re-register the snapshots from their sources"
        )
    if unknown["models"]:
        names = ", ".join(m["name"] for m in unknown["models"])
        not_recovered.append(
            f"model registry entries for {names} (versions, aliases, gates lived only in the catalog); "
            "promote the runs again"
        )
    if "audit" not in salvaged:
        not_recovered.append("the audit log (it lived only in the catalog)")
    return {
        "catalog": str(path),
        "moved_to": str(moved) if moved else None,
        "old_catalog_problem": why_broken if why_broken != "missing" else "the catalog file was missing",
        "run_folders": len(folders),
        "runs_recovered": len(indexed),
        "runs_unreadable": unreadable,
        "open_runs": open_runs,
        "rows": counts,
        "salvaged": salvaged,
        "salvage_problems": problems,
        "unrecovered_snapshot_blobs": unknown["snapshot_blobs"],
        "unrecovered_models": unknown["models"],
        "not_recovered": not_recovered,
    }


def describe(report: dict[str, Any]) -> list[str]:
    """The report as lines for a person (what the CLI prints)."""
    lines = []
    if report["moved_to"]:
        lines.append(f"old catalog moved to {report['moved_to']}")
    else:
        lines.append("no catalog file was present; a new one was created")
    lines.append(f"runs: {report['runs_recovered']} of {report['run_folders']} run folder(s) re-indexed "
                 f"({report['rows']['run_metrics']} metric points, {report['rows']['run_params']} params, "
                 f"{report['rows']['run_artifacts']} artifacts)")  # fmt: skip
    for table, rows in report["salvaged"].items():
        lines.append(f"copied from the old catalog: {table} ({rows} rows)")
    for problem in report["salvage_problems"]:
        lines.append(f"could not copy: {problem}")
    for item in report["not_recovered"]:
        lines.append(f"NOT recovered: {item}")
    return lines

"""Convenience functions of the top-level Python API that are more than a re-export.

They only adapt arguments (a workspace given as a path, a friendlier signature) and then call
the one library function that owns the concept.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from workbench.remote.dispatch import remote_capable
from workbench.snapshots import store
from workbench.workspace import Workspace, init_workspace, open_workspace, use_workspace


def init(home: str | os.PathLike[str] | None = None, group: str | None = None) -> Workspace:
    """Create (or open) a workspace and make it the default for this process.

    The workspace is private to you unless `group` names a Unix group to share it with.
    """
    ws = init_workspace(home, group=group)
    use_workspace(ws)
    return ws


def use(home: str | os.PathLike[str] | Workspace | None) -> Workspace | None:
    """Point the Python API at an existing workspace (None: find it from cwd/env again)."""
    ws = home if isinstance(home, Workspace) or home is None else open_workspace(home)
    use_workspace(ws)
    return ws


def snapshot(
    name: str,
    data: Any = None,
    *,
    sql: str | None = None,
    description: str | None = None,
    expect: dict[str, Any] | str | os.PathLike[str] | None = None,
) -> store.Snapshot:
    """Register a DataFrame, a CSV/Parquet path, or `sql=` query result as snapshot `name`."""
    return store.register(name, data, sql=sql, description=description, expectations=expect)


def list_snapshots(name: str | None = None, all_versions: bool = False) -> pd.DataFrame:
    """A table of registered snapshots (latest version per name unless `all_versions`).

    Public as `wb.list_snapshots`; `wb.snapshots(...)` is its documented alias (the name is also
    the `workbench.snapshots` package). `workbench.snapshots.list_snapshots` gives the `Snapshot`
    objects this table is made from.
    """
    rows = [
        {
            "ref": s.ref,
            "name": s.name,
            "version": s.version,
            "rows": s.row_count,
            "columns": len(s.columns),
            "bytes": s.byte_size,
            "created_at": s.created_at,
            "creator": s.creator,
            "description": s.description,
            "hash": s.content_hash[:12],
        }
        for s in store.list_snapshots(name, all_versions)
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "ref",
            "name",
            "version",
            "rows",
            "columns",
            "bytes",
            "created_at",
            "creator",
            "description",
            "hash",
        ],
    )


def load_snapshot(ref: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Load a snapshot as a DataFrame; inside a tracked run this also records lineage.

    In a rerun, an unversioned ref (`wine`) resolves to the version the original run read.
    """
    from workbench import tracking
    from workbench.names import parse_ref

    parsed = parse_ref(ref, "snapshot")
    if parsed.version is None and (pinned := tracking.pinned_version(parsed.name)):
        ref = f"{parsed.name}@{pinned}"
    snap = store.get(ref)
    frame = store.load(snap.ref, columns=columns)
    tracking.record_input(snap.name, snap.version)
    return frame


@remote_capable("log_outcomes")
def log_outcomes(
    model: str,
    data: Any,
    id_column: str = "request_id",
    outcome_column: str = "outcome",
    row_column: str | None = None,
    ws: Workspace | None = None,
) -> dict[str, Any]:
    """Record late outcomes of served predictions from a table, matched to the prediction log by
    request id (and row within the request: `row_column`, else 0).

    `data` is a DataFrame, a CSV/Parquet path or a snapshot `name@version`. Every row is checked
    before any is written. Returns the counts: `recorded`, of those `duplicates` (ids that had an
    outcome already: the first one counts) and `unknown` (no logged prediction yet: matched once
    it is logged). Audited as `outcomes.recorded`. With a team server configured (and no `ws`) the
    rows are checked here, then recorded there (`remote.store_monitor`; role editor).
    """
    from workbench.quality.outcomes import record_bulk
    from workbench.workspace import current_workspace

    return record_bulk(ws or current_workspace(), model, data, id_column, outcome_column, row_column)

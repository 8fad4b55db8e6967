"""SQL over snapshots: `wb.sql("select * from snapshot('iris@2')")`.

Queries run in a scratch in-memory DuckDB, never in the catalog. Before a query runs, every
`snapshot('name@version')` call in it is resolved through the catalog and replaced by a
`read_parquet(...)` of that version's file (the reference is validated by `parse_ref`, and the
path is Workbench's own), and each snapshot name is also a view of its latest version, so
`select * from wine` works too.

Every file a query reads is checked against its recorded hash first (`store.data_path`). Views
are therefore created only for the snapshot names that appear in the query text: checking every
snapshot's file on each query would hash the whole workspace, and one damaged snapshot would
break queries that never touch it. A name the text does not contain has no view, so a query
cannot reach an unchecked file through it.
"""

from __future__ import annotations

import re

import duckdb
import pandas as pd

from workbench.errors import DataSourceError
from workbench.snapshots.engine import engine, quote_ident, quote_literal
from workbench.workspace import Workspace, current_workspace

_SNAPSHOT_CALL = re.compile(r"""\bsnapshot\s*\(\s*'([^']*)'\s*\)""", re.IGNORECASE)


def mentions(query: str, name: str) -> bool:
    """Whether `name` occurs in `query` as a whole identifier (DuckDB names ignore case)."""
    pattern = rf"(?<![A-Za-z0-9_$]){re.escape(name)}(?![A-Za-z0-9_$])"
    return re.search(pattern, query, re.IGNORECASE) is not None


def prepare(con: duckdb.DuckDBPyConnection, query: str, ws: Workspace) -> str:
    """Rewrite `snapshot('ref')` calls and create one view per snapshot name in `con`."""
    from workbench.snapshots.store import data_path, get, list_snapshots

    def replace(match: re.Match[str]) -> str:
        snap = get(match.group(1), ws)
        return f"read_parquet({quote_literal(str(data_path(snap, ws)))})"

    rewritten = _SNAPSHOT_CALL.sub(replace, query)
    without_calls = _SNAPSHOT_CALL.sub(" ", query)
    for snap in list_snapshots(ws=ws):
        if not mentions(without_calls, snap.name):
            continue
        path = quote_literal(str(data_path(snap, ws)))
        con.execute(f"CREATE OR REPLACE VIEW {quote_ident(snap.name)} AS SELECT * FROM read_parquet({path})")
    return rewritten.strip().rstrip(";")


def sql(query: str, ws: Workspace | None = None) -> pd.DataFrame:
    """Run one SQL statement over snapshots and return the result as a DataFrame."""
    if not isinstance(query, str) or not query.strip():
        raise DataSourceError("The SQL query is empty.", "Pass a SELECT statement.")
    ws = ws or current_workspace()
    with engine(ws) as con:
        rewritten = prepare(con, query, ws)
        try:
            return con.execute(rewritten).df()
        except duckdb.Error as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise DataSourceError(f"SQL error: {first_line}", "Fix the query and run it again.") from exc

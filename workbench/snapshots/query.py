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

`sql` is read-only and confined to those files, for a notebook as for the team server's
`POST /api/v1/sql`: the text must be exactly one SELECT statement (also `WITH`, `FROM ...`,
`VALUES`, `DESCRIBE`/`SUMMARIZE` of a query), so `COPY`, `ATTACH`, `INSTALL`/`LOAD`, `SET`,
`PRAGMA`, `EXPORT` and a second statement are refused before anything runs; and once the views
exist the scratch engine is locked (`enable_external_access = false` with `allowed_paths` = the
checked snapshot files, no extension auto-loading, `lock_configuration`), so a SELECT cannot read
any other file or URL either (`read_csv('/etc/passwd')`, `glob`, another snapshot's blob by path).
"""

from __future__ import annotations

import re
import threading

import duckdb
import pandas as pd

from workbench.errors import DataSourceError
from workbench.remote.dispatch import remote_capable
from workbench.snapshots.engine import engine, quote_ident, quote_literal
from workbench.workspace import Workspace, current_workspace

_SNAPSHOT_CALL = re.compile(r"""\bsnapshot\s*\(\s*'([^']*)'\s*\)""", re.IGNORECASE)
_READ_ONLY_HINT = (
    "Only one read-only SELECT over snapshots is allowed: use snapshot('name@version') or a snapshot "
    "name as a table; export data with 'workbench snapshot export'."
)


def mentions(query: str, name: str) -> bool:
    """Whether `name` occurs in `query` as a whole identifier (DuckDB names ignore case)."""
    pattern = rf"(?<![A-Za-z0-9_$]){re.escape(name)}(?![A-Za-z0-9_$])"
    return re.search(pattern, query, re.IGNORECASE) is not None


def _prepare(con: duckdb.DuckDBPyConnection, query: str, ws: Workspace) -> tuple[str, list[str]]:
    """`prepare`, also returning the (checked) files the query may read."""
    from workbench.snapshots.store import data_path, get, list_snapshots

    paths: list[str] = []

    def replace(match: re.Match[str]) -> str:
        snap = get(match.group(1), ws)
        paths.append(str(data_path(snap, ws)))
        return f"read_parquet({quote_literal(paths[-1])})"

    rewritten = _SNAPSHOT_CALL.sub(replace, query)
    without_calls = _SNAPSHOT_CALL.sub(" ", query)
    for snap in list_snapshots(ws=ws):
        if not mentions(without_calls, snap.name):
            continue
        paths.append(str(data_path(snap, ws)))
        path = quote_literal(paths[-1])
        con.execute(f"CREATE OR REPLACE VIEW {quote_ident(snap.name)} AS SELECT * FROM read_parquet({path})")
    return rewritten.strip().rstrip(";"), paths


def prepare(con: duckdb.DuckDBPyConnection, query: str, ws: Workspace) -> str:
    """Rewrite `snapshot('ref')` calls and create one view per snapshot name in `con`."""
    return _prepare(con, query, ws)[0]


def check_select(query: str) -> None:
    """Refuse (`DataSourceError`) anything but exactly one SELECT statement."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise DataSourceError(f"SQL error: {first_line}", "Fix the query and run it again.") from exc
    if not statements:
        raise DataSourceError("The SQL query is empty.", "Pass a SELECT statement.")
    if len(statements) > 1:
        raise DataSourceError(f"The SQL text has {len(statements)} statements; only one is allowed.", _READ_ONLY_HINT)
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise DataSourceError(f"Only SELECT queries are allowed, not {kind.name}.", _READ_ONLY_HINT)


def _lock_down(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    """From now on `con` reads only `paths` and cannot change its settings (see the module doc)."""
    allowed = "[" + ", ".join(quote_literal(p) for p in dict.fromkeys(paths)) + "]"
    con.execute(f"SET allowed_paths = {allowed}")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


@remote_capable("sql")
def sql(
    query: str, ws: Workspace | None = None, limit: int | None = None, timeout: float | None = None
) -> pd.DataFrame:
    """Run one read-only SELECT over snapshots and return the result as a DataFrame.

    `limit`: at most that many rows (the query's own order). `timeout`: seconds after which the query
    is interrupted (`DataSourceError`). Anything but one SELECT, or reading any file other than the
    snapshots it names, is refused with `DataSourceError` (see the module doc).
    """
    if not isinstance(query, str) or not query.strip():
        raise DataSourceError("The SQL query is empty.", "Pass a SELECT statement.")
    check_select(query)
    ws = ws or current_workspace()
    with engine(ws) as con:
        rewritten, paths = _prepare(con, query, ws)
        check_select(rewritten)  # the rewrite only replaces snapshot('...') calls: still one SELECT
        _lock_down(con, paths)
        timer = threading.Timer(timeout, con.interrupt) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            relation = con.sql(rewritten)
            if relation is None:  # pragma: no cover - check_select admits only statements with a result
                raise DataSourceError("The SQL query returned no result.", _READ_ONLY_HINT)
            return (relation.limit(limit) if limit is not None else relation).df()
        except duckdb.InterruptException as exc:
            raise DataSourceError(f"The SQL query took longer than {timeout:g} s and was stopped.",
                                  "Select less (filter, aggregate or add a LIMIT).") from exc  # fmt: skip
        except duckdb.Error as exc:
            first_line = str(exc).strip().splitlines()[0]
            if isinstance(exc, duckdb.PermissionException):
                raise DataSourceError(f"SQL refused: {first_line}", _READ_ONLY_HINT) from exc
            raise DataSourceError(f"SQL error: {first_line}", "Fix the query and run it again.") from exc
        finally:
            if timer:
                timer.cancel()

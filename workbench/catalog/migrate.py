"""Forward-only schema migrations, kept as numbered SQL files next to this module.

Each concept (snapshots, runs, models, audit, ...) adds its tables in its own numbered file, so
a workspace made by an older Workbench opens in a newer one: missing migrations are applied in
order, each in its own transaction, and recorded in `schema_migrations`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from importlib import resources

import duckdb

from workbench.errors import WorkbenchError

_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def available_migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every migration shipped with this version, in order."""
    found = []
    for entry in resources.files("workbench.catalog.migrations").iterdir():
        match = _FILE_PATTERN.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchone()[0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every missing migration; return the resulting schema version."""
    migrations = available_migrations()
    current = schema_version(con)
    newest = migrations[-1][0] if migrations else 0
    if current > newest:
        raise WorkbenchError(
            f"This workspace was written by a newer Workbench (schema {current}, this version knows up to {newest}).",
            "Upgrade Workbench: pip install -U workbench.",
        )
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)"
    )
    for number, name, sql in migrations:
        if number <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [number, name, datetime.now(timezone.utc)],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        current = number
    return current

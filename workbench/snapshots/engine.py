"""Scratch DuckDB engines for reading data: never the catalog file.

Loading, hashing, profiling, SQL and diffs run in an in-memory DuckDB that reads the snapshot
Parquet files directly, so heavy work never holds the catalog lock. The engine spills to the
workspace's scratch folder under a memory cap, which keeps registration of files larger than
memory streaming instead of loading them whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from workbench.workspace import Workspace

DEFAULT_MEMORY_LIMIT = "1GB"


def quote_ident(name: str) -> str:
    """A DuckDB identifier literal for any column name."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A DuckDB string literal (for the few places that take no parameters, e.g. COPY)."""
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def engine(ws: Workspace | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(":memory:")
    try:
        con.execute(
            f"SET memory_limit = {quote_literal(os.environ.get('WORKBENCH_MEMORY_LIMIT', DEFAULT_MEMORY_LIMIT))}"
        )
        if ws is not None:
            ws.tmp_dir.mkdir(parents=True, exist_ok=True)
            con.execute(f"SET temp_directory = {quote_literal(str(ws.tmp_dir / 'duckdb'))}")
        yield con
    finally:
        con.close()

"""Schema, content hash and per-column profile of a Parquet file, computed by DuckDB.

The content hash covers the data, not the file bytes: the column names and types, the row
count, and two independent 64-bit sums of per-row hashes keyed by row position. Re-registering
the same rows in the same order (from a CSV, a DataFrame or a query) therefore gives the same
hash and dedups to the existing version, while Parquet encoding details do not matter.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import duckdb

from workbench.snapshots.engine import quote_ident, quote_literal

NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)
TOP_VALUES = 5
HASH_ALGORITHM = "duckdb-rowhash-v1"


def is_numeric(duck_type: str) -> bool:
    return duck_type.upper().startswith(NUMERIC_TYPES)


def is_textual(duck_type: str) -> bool:
    return duck_type.upper() in ("VARCHAR", "BOOLEAN") or duck_type.upper().startswith("ENUM")


def parquet_from(path: Path) -> str:
    return f"read_parquet({quote_literal(str(path))})"


def read_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[dict[str, str]]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {parquet_from(path)}").fetchall()
    return [{"name": row[0], "type": row[1]} for row in rows]


def content_hash(con: duckdb.DuckDBPyConnection, path: Path, columns: list[dict[str, str]]) -> tuple[str, int]:
    """(hash, row_count) of the data in a Parquet file."""
    cols = ", ".join(quote_ident(c["name"]) for c in columns)
    if any(c["name"] == "file_row_number" for c in columns):
        numbered = f"SELECT row_number() OVER () AS __wb_rn, * FROM {parquet_from(path)}"
    else:  # the Parquet reader's own row index: parallel and order-exact
        numbered = (
            f"SELECT file_row_number AS __wb_rn, {cols} "
            f"FROM read_parquet({quote_literal(str(path))}, file_row_number = true)"
        )
    row = con.execute(
        f"SELECT count(*), coalesce(sum(hash(__wb_rn, {cols})), 0)::VARCHAR, "
        f"coalesce(sum(hash({cols}, __wb_rn)), 0)::VARCHAR FROM ({numbered})"
    ).fetchone()
    row_count, sum_a, sum_b = row
    schema = json.dumps([[c["name"], c["type"]] for c in columns])
    digest = hashlib.sha256(f"{HASH_ALGORITHM}|{schema}|{row_count}|{sum_a}|{sum_b}".encode()).hexdigest()
    return digest, int(row_count)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return str(value)


def profile(con: duckdb.DuckDBPyConnection, path: Path, columns: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Per column: type, null count, distinct estimate, min/max/mean (numbers), top values."""
    if not columns:
        return {}
    parts: list[str] = []
    for col in columns:
        q = quote_ident(col["name"])
        parts += [f"count(*) - count({q})", f"approx_count_distinct({q})"]
        if is_numeric(col["type"]):
            parts += [f"min({q})::DOUBLE", f"max({q})::DOUBLE", f"avg({q})::DOUBLE"]
        elif col["type"].upper().startswith(("DATE", "TIME")):
            parts += [f"min({q})::VARCHAR", f"max({q})::VARCHAR", "NULL"]
        else:
            parts += ["NULL", "NULL", "NULL"]
    values = con.execute(f"SELECT {', '.join(parts)} FROM {parquet_from(path)}").fetchone()
    result: dict[str, dict[str, Any]] = {}
    for index, col in enumerate(columns):
        nulls, distinct, low, high, mean = values[index * 5 : index * 5 + 5]
        entry: dict[str, Any] = {
            "type": col["type"],
            "null_count": int(nulls),
            "distinct_estimate": int(distinct),
        }
        if low is not None or high is not None:
            entry.update(min=_jsonable(low), max=_jsonable(high))
        if mean is not None:
            entry["mean"] = _jsonable(mean)
        if is_textual(col["type"]):
            q = quote_ident(col["name"])
            top = con.execute(
                f"SELECT {q}::VARCHAR AS v, count(*) AS n FROM {parquet_from(path)} "
                f"WHERE {q} IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT {TOP_VALUES}"
            ).fetchall()
            entry["top_values"] = [{"value": v, "count": int(n)} for v, n in top]
        result[col["name"]] = entry
    return result

"""Turning a DataFrame, a CSV/Parquet file or a SQL query into one Parquet file.

Everything goes through DuckDB's streaming `COPY ... TO ... (FORMAT PARQUET)`, so a CSV larger
than memory is never loaded whole into pandas. Errors in the source (missing, empty or corrupt
file, bad SQL) become `DataSourceError` with a message naming the source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from workbench.errors import DataSourceError
from workbench.snapshots.engine import quote_literal

CSV_SUFFIXES = {".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz"}
PARQUET_SUFFIXES = {".parquet", ".pq"}


@dataclass(frozen=True)
class Source:
    """What a snapshot is made from; `describe()` is what the catalog records as its source."""

    kind: str  # "dataframe" | "csv" | "parquet" | "sql"
    value: Any

    def describe(self) -> str:
        if self.kind == "dataframe":
            return "dataframe"
        if self.kind == "sql":
            return f"sql: {self.value}"
        return f"{self.kind}: {self.value}"


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    joined = "".join(suffixes)
    return joined if joined in CSV_SUFFIXES else (suffixes[-1] if suffixes else "")


def source_from(data: Any = None, sql: str | None = None) -> Source:
    """Classify what the user passed (exactly one of `data` or `sql`)."""
    if (data is None) == (sql is None):
        raise DataSourceError(
            "Give exactly one data source.",
            "Pass a DataFrame or a CSV/Parquet path, or a SQL query with sql=...",
        )
    if sql is not None:
        if not isinstance(sql, str) or not sql.strip():
            raise DataSourceError("The SQL query is empty.", "Pass a SELECT statement.")
        return Source("sql", sql.strip())
    if isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser().absolute()
        if not path.exists():
            raise DataSourceError(f"File not found: {path}.", "Check the path and try again.")
        if not path.is_file():
            raise DataSourceError(f"{path} is not a file.", "Give a CSV or Parquet file.")
        if path.stat().st_size == 0:
            raise DataSourceError(f"{path} is empty (0 bytes).", "Give a file with data.")
        suffix = _suffix(path)
        if suffix in CSV_SUFFIXES:
            return Source("csv", str(path))
        if suffix in PARQUET_SUFFIXES:
            return Source("parquet", str(path))
        raise DataSourceError(
            f"Unsupported file type {suffix or '(none)'!r} for {path.name}.",
            "Use a .csv, .tsv or .parquet file, or load it into a DataFrame first.",
        )
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        if len(data.columns) == 0:
            raise DataSourceError("The DataFrame has no columns.", "Pass a DataFrame with data.")
        if len(set(map(str, data.columns))) != len(data.columns):
            raise DataSourceError("The DataFrame has duplicate column names.", "Rename the columns to be unique.")
        return Source("dataframe", data)
    raise DataSourceError(
        f"Cannot make a snapshot from {type(data).__name__}.",
        "Pass a pandas DataFrame, a CSV/Parquet path, or sql='SELECT ...'.",
    )


def relation_sql(con: duckdb.DuckDBPyConnection, source: Source) -> str:
    """A SELECT over the source, valid in `con` (registers the DataFrame when needed)."""
    if source.kind == "dataframe":
        frame = source.value
        if not all(isinstance(c, str) for c in frame.columns):
            frame = frame.rename(columns=str)
        con.register("__wb_source_df", frame)
        return "SELECT * FROM __wb_source_df"
    if source.kind == "csv":
        return f"SELECT * FROM read_csv({quote_literal(source.value)})"
    if source.kind == "parquet":
        return f"SELECT * FROM read_parquet({quote_literal(source.value)})"
    return source.value


def _is_out_of_space(message: str) -> bool:
    lowered = message.lower()
    return "could not write" in lowered and any(
        s in lowered for s in ("no space left", "file too large", "disk quota", "out of space")
    )


def write_parquet(con: duckdb.DuckDBPyConnection, select_sql: str, target: Path, label: str) -> None:
    """Stream a SELECT into a Parquet file, with source errors turned into clear messages."""
    try:
        con.execute(
            f"COPY ({select_sql}) TO {quote_literal(str(target))} "
            "(FORMAT PARQUET, COMPRESSION ZSTD, ROW_GROUP_SIZE 122880)"
        )
    except duckdb.Error as exc:
        first_line = str(exc).strip().splitlines()[0]
        if _is_out_of_space(str(exc)):
            raise DataSourceError(
                f"Not enough disk space to store {label} in {target.parent}: {first_line}",
                "Free some space (or move the workspace with WORKBENCH_HOME) and try again; nothing was registered.",
            ) from exc
        raise DataSourceError(
            f"Could not read {label}: {first_line}",
            "Check that the file is valid / the query runs, then try again.",
        ) from exc
    columns = con.execute(
        f"SELECT count(*) FROM (DESCRIBE SELECT * FROM read_parquet({quote_literal(str(target))}))"
    ).fetchone()[0]
    if columns == 0:
        raise DataSourceError(f"{label} has no columns.", "Give data with at least one column.")

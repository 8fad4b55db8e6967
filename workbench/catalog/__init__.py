"""The DuckDB catalog: an index of snapshots, runs and models kept in one file per workspace."""

from workbench.catalog.connection import connect, transaction

__all__ = ["connect", "transaction"]

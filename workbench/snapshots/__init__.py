"""Data snapshots: immutable, content-addressed, versioned tables stored as Parquet."""

from workbench.snapshots.differ import SnapshotDiff, diff
from workbench.snapshots.expectations import ValidationReport
from workbench.snapshots.query import sql
from workbench.snapshots.store import (
    Snapshot,
    data_path,
    export,
    get,
    list_snapshots,
    load,
    register,
)

__all__ = [
    "Snapshot",
    "SnapshotDiff",
    "ValidationReport",
    "data_path",
    "diff",
    "export",
    "get",
    "list_snapshots",
    "load",
    "register",
    "sql",
]

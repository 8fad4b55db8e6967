"""Comparing two snapshot versions: schema, row count, column profiles, and rows by key.

Row-level changes need a key (one or more columns that identify a row); DuckDB joins the two
Parquet files on it directly, so diffs of large snapshots never go through pandas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from workbench.errors import ValidationError
from workbench.remote.dispatch import remote_capable
from workbench.snapshots.engine import engine, quote_ident, quote_literal
from workbench.snapshots.store import Snapshot, data_path, get
from workbench.workspace import Workspace, current_workspace

PROFILE_FIELDS = ("null_count", "distinct_estimate", "min", "max", "mean")
EXAMPLES = 5


@dataclass
class SnapshotDiff:
    a: str
    b: str
    same_content: bool
    row_count: tuple[int, int]
    columns_added: list[dict[str, str]] = field(default_factory=list)
    columns_removed: list[dict[str, str]] = field(default_factory=list)
    type_changes: list[dict[str, str]] = field(default_factory=list)
    profile_changes: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    key: list[str] | None = None
    rows_added: int | None = None
    rows_removed: int | None = None
    rows_changed: int | None = None
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def row_delta(self) -> int:
        return self.row_count[1] - self.row_count[0]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["row_delta"] = self.row_delta
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapshotDiff:
        """The `SnapshotDiff` a team server answered (its `to_dict()`)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["row_count"] = tuple(data["row_count"])
        return cls(**fields)


def _profile_changes(a: Snapshot, b: Snapshot) -> dict[str, dict[str, list[Any]]]:
    changes: dict[str, dict[str, list[Any]]] = {}
    for column in a.profile.keys() & b.profile.keys():
        before, after = a.profile[column], b.profile[column]
        delta = {
            name: [before.get(name), after.get(name)] for name in PROFILE_FIELDS if before.get(name) != after.get(name)
        }
        if delta:
            changes[column] = delta
    return dict(sorted(changes.items()))


@remote_capable("diff_snapshots")
def diff(a_ref: str, b_ref: str, key: list[str] | str | None = None, ws: Workspace | None = None) -> SnapshotDiff:
    """What changed from snapshot `a_ref` to `b_ref` (rows matched on `key` when given)."""
    ws = ws or current_workspace()
    a, b = get(a_ref, ws), get(b_ref, ws)
    a_types = {c["name"]: c["type"] for c in a.columns}
    b_types = {c["name"]: c["type"] for c in b.columns}
    result = SnapshotDiff(
        a=a.ref,
        b=b.ref,
        same_content=a.content_hash == b.content_hash,
        row_count=(a.row_count, b.row_count),
        columns_added=[{"name": n, "type": t} for n, t in b_types.items() if n not in a_types],
        columns_removed=[{"name": n, "type": t} for n, t in a_types.items() if n not in b_types],
        type_changes=[
            {"name": n, "from": a_types[n], "to": b_types[n]}
            for n in a_types
            if n in b_types and a_types[n] != b_types[n]
        ],
        profile_changes=_profile_changes(a, b),
    )
    if key:
        _row_diff(result, a, b, [key] if isinstance(key, str) else list(key), ws)
    return result


def _row_diff(result: SnapshotDiff, a: Snapshot, b: Snapshot, key: list[str], ws: Workspace) -> None:
    a_names = [c["name"] for c in a.columns]
    b_names = {c["name"] for c in b.columns}
    missing = [k for k in key if k not in a_names or k not in b_names]
    if missing:
        raise ValidationError(
            f"Key column(s) {', '.join(missing)} are not in both {a.ref} and {b.ref}.",
            "Choose key columns that both versions have.",
        )
    shared = [n for n in a_names if n in b_names and n not in key]
    on = " AND ".join(f"A.{quote_ident(k)} = B.{quote_ident(k)}" for k in key)
    first_key = quote_ident(key[0])
    changed = " OR ".join(f"A.{quote_ident(n)} IS DISTINCT FROM B.{quote_ident(n)}" for n in shared)
    key_cols = ", ".join(f"{{side}}.{quote_ident(k)}" for k in key)
    src_a = f"read_parquet({quote_literal(str(data_path(a, ws)))})"
    src_b = f"read_parquet({quote_literal(str(data_path(b, ws)))})"
    queries = {
        "added": (f"FROM {src_b} B ANTI JOIN {src_a} A ON {on}", key_cols.format(side="B")),
        "removed": (f"FROM {src_a} A ANTI JOIN {src_b} B ON {on}", key_cols.format(side="A")),
    }
    if changed:
        queries["changed"] = (
            f"FROM {src_a} A JOIN {src_b} B ON {on} WHERE {changed}",
            key_cols.format(side="A"),
        )
    counts: dict[str, int] = {"added": 0, "removed": 0, "changed": 0}
    with engine(ws) as con:
        for kind, (body, cols) in queries.items():
            counts[kind] = con.execute(f"SELECT count(*) {body}").fetchone()[0]
            if counts[kind]:
                cursor = con.execute(f"SELECT {cols} {body} ORDER BY 1 LIMIT {EXAMPLES}")
                result.examples[kind] = [dict(zip(key, map(_plain, row), strict=True)) for row in cursor.fetchall()]
        group = ", ".join(map(quote_ident, key))
        for snap, src in ((a, src_a), (b, src_b)):
            dupes = con.execute(
                f"SELECT count(*) FROM (SELECT {first_key} FROM {src} GROUP BY {group} HAVING count(*) > 1)"
            ).fetchone()[0]
            if dupes:
                raise ValidationError(
                    f"Key {'+'.join(key)} is not unique in {snap.ref} ({dupes} duplicated values).",
                    "Give a key that identifies each row.",
                )
    result.key = key
    result.rows_added, result.rows_removed, result.rows_changed = (
        counts["added"],
        counts["removed"],
        counts["changed"],
    )


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)

"""Registering, finding, loading and exporting snapshots.

Registration does the heavy work outside the catalog: the source is streamed to a Parquet file
in the workspace's scratch folder, validated, hashed and profiled by a scratch DuckDB engine,
then moved whole into the blob store. Only then does one short catalog transaction assign the
next version number (or find the existing version with the same content hash) and insert the
row. A crash at any point leaves either no snapshot or a complete one; at worst an orphan blob,
which `workbench doctor` removes.

Integrity: the blob id names the *data* (`content_hash`), not the file bytes, so registration also
records the sha256 of the Parquet file (`file_sha256`) and every read goes through `data_path`,
which checks the file against it first (`BlobIntegrityError` on a mismatch). Rows registered
before that column existed (NULL) are checked by recomputing the data digest and comparing it
with the blob id: slower, but it checks what the id promises, whereas recording the file's hash
the first time it is read would bless a file swapped before then. `workbench doctor --fix`
records the hash of such files once their data digest has been checked, so later reads are fast.
(The data digest detects damage and swapped files; unlike sha256 it is not built to resist a
deliberately forged file.)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from workbench import audit, blobs
from workbench.catalog import connect, transaction
from workbench.catalog.read_cache import cached_read, deep_copies
from workbench.errors import DataSourceError, NotFoundError, ValidationError, WorkbenchError
from workbench.identity import current_user
from workbench.names import Ref, parse_ref, validate_name
from workbench.remote.dispatch import remote_capable
from workbench.snapshots import expectations as expect
from workbench.snapshots.engine import engine, quote_literal
from workbench.snapshots.profile import content_hash, profile, read_columns
from workbench.snapshots.sources import Source, relation_sql, source_from, write_parquet
from workbench.workspace import Workspace, current_workspace

_COLUMNS = (
    "name, version, content_hash, created_at, creator, source, description, row_count, "
    "byte_size, columns, profile, blob, file_sha256"
)


@dataclass
class Snapshot:
    """Metadata of one snapshot version (the data stays in its Parquet blob)."""

    name: str
    version: int
    content_hash: str
    created_at: datetime
    creator: str
    source: str
    description: str | None
    row_count: int
    byte_size: int
    columns: list[dict[str, str]]
    profile: dict[str, dict[str, Any]]
    blob: str
    #: sha256 of the Parquet file (None: registered before it was recorded; see the module doc).
    file_sha256: str | None = field(default=None, repr=False)
    #: False when registration found identical content already registered under this name.
    created: bool = field(default=True, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("file_sha256")  # an integrity detail, not part of the public description
        data["created_at"] = self.created_at.isoformat()
        data["ref"] = self.ref
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        """The `Snapshot` a team server answered (`to_dict()`, plus `file_sha256` when it has one)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["created_at"] = datetime.fromisoformat(data["created_at"])
        return cls(**fields)

    def __repr__(self) -> str:
        return f"<Snapshot {self.ref} rows={self.row_count} cols={len(self.columns)}>"


def _from_row(row: tuple) -> Snapshot:
    values = list(row)
    values[9] = json.loads(values[9])
    values[10] = json.loads(values[10])
    return Snapshot(*values)


def _ws(ws: Workspace | None) -> Workspace:
    return ws or current_workspace()


@remote_capable("register_snapshot")
def register(
    name: str,
    data: Any = None,
    *,
    sql: str | None = None,
    description: str | None = None,
    expectations: dict[str, Any] | str | os.PathLike[str] | None = None,
    ws: Workspace | None = None,
    source_label: str | None = None,
) -> Snapshot:
    """Register `data` (DataFrame or CSV/Parquet path) or the result of `sql` as `name@next`.

    Identical content already registered under `name` returns that version (`created=False`).
    Failing expectations raise `ValidationError` (with `.report`) and register nothing.
    `source_label` is what the catalog records as the source and error messages call it (default:
    the path, query or "dataframe"); the team server names an upload with it, not its scratch file.
    """
    source, spec = check_registration(name, data, sql, description, expectations)
    ws = _ws(ws)
    with engine(ws) as con, blobs.temp_path(ws, ".parquet") as tmp:
        if source.kind == "sql":
            from workbench.snapshots.query import prepare

            select_sql = prepare(con, source.value, ws)
        else:
            select_sql = relation_sql(con, source)
        label = source_label or ("the DataFrame" if source.kind == "dataframe" else source.describe())
        try:
            write_parquet(con, select_sql, tmp, label)
        except DataSourceError as exc:
            if source_label and source.kind in ("csv", "parquet"):  # DuckDB's message names the file
                raise DataSourceError(exc.message.replace(source.value, "the upload"), exc.hint) from None
            raise
        report = expect.validate(con, tmp, spec)
        if not report.ok:
            raise ValidationError(
                f"Snapshot {name!r} was not registered: {report.summary()}",
                "Fix the data or the expectations and register again.",
                report=report,
            )
        columns = read_columns(con, tmp)
        digest, row_count = content_hash(con, tmp, columns)
        stats = profile(con, tmp, columns)
        # The Parquet file leaves the context above only once complete; adopt it under its hash.
        blob_id = f"{digest}.parquet"
        byte_size = tmp.stat().st_size
        stored = _store_data_file(con, ws, blob_id, tmp, digest)
    return _insert(ws, name, digest, source_label or source.describe(), description, row_count, byte_size, columns,
                   stats, blob_id, stored)  # fmt: skip


def check_registration(
    name: str, data: Any, sql: str | None, description: str | None, expectations: Any
) -> tuple[Source, dict[str, Any]]:
    """What `register` checks before touching any data (also where a team server registers): the
    name, the source, the description, and the expectations (loaded, e.g. from a YAML file)."""
    validate_name(name, "snapshot name")
    source = source_from(data, sql)
    spec = expect.load_expectations(expectations)
    if description is not None and not isinstance(description, str):
        raise WorkbenchError("description must be a string.")
    return source, spec


@dataclass(frozen=True)
class _StoredFile:
    """The file now under a snapshot blob id: its sha256, and whether a damaged copy was replaced."""

    sha256: str
    #: True when a damaged stored copy was replaced: every row of the blob id takes the new hash.
    replaced: bool = False


def _store_data_file(con: Any, ws: Workspace, blob_id: str, tmp: Path, digest: str) -> _StoredFile:
    """Move the finished Parquet file into the store; return the hash of the file stored there.

    The same data may already be stored (another name, an earlier registration, an interrupted
    one) with different bytes: Parquet encoding is not canonical. That file is kept if its data
    matches the digest; a damaged one is replaced by the fresh file.
    """
    fresh = blobs.sha256_file(tmp)
    if blobs.adopt_new(ws, blob_id, tmp):
        return _StoredFile(fresh)
    target = blobs.blob_path(ws, blob_id)
    stored = blobs.sha256_file(target)
    if stored == fresh or _data_digest_with(con, target) == digest:
        return _StoredFile(stored)
    blobs.replace_damaged(ws, blob_id, tmp)
    return _StoredFile(fresh, replaced=True)


def _data_digest_with(con: Any, path: Path) -> str:
    """The data digest of a Parquet file ('' if it cannot be read as Parquet)."""
    import duckdb

    try:
        return content_hash(con, path, read_columns(con, path))[0]
    except duckdb.Error:
        return ""


def data_digest(path: Path) -> str:
    """The data digest of a Parquet file, for checking legacy snapshot files against their id."""
    with engine() as con:
        return _data_digest_with(con, path)


def _insert(
    ws: Workspace,
    name: str,
    digest: str,
    source: str,
    description: str | None,
    row_count: int,
    byte_size: int,
    columns: list,
    stats: dict,
    blob_id: str,
    stored: _StoredFile,
) -> Snapshot:
    with transaction(ws) as con:
        # Every row of a blob id describes the same file, whose data was just checked: rows
        # without a hash (or, after a damaged copy was replaced, all of them) take its hash.
        con.execute(
            "UPDATE snapshots SET file_sha256 = ? WHERE blob = ? AND (file_sha256 IS NULL OR ?)",
            [stored.sha256, blob_id, stored.replaced],
        )
        existing = con.execute(
            f"SELECT {_COLUMNS} FROM snapshots WHERE name = ? AND content_hash = ? ORDER BY version LIMIT 1",
            [name, digest],
        ).fetchone()
        if existing:
            snap = _from_row(existing)
            snap.created = False
            return snap
        version = con.execute("SELECT coalesce(max(version), 0) + 1 FROM snapshots WHERE name = ?", [name]).fetchone()[
            0
        ]
        snap = Snapshot(
            name,
            version,
            digest,
            datetime.now(timezone.utc),
            current_user(),
            source,
            description,
            row_count,
            byte_size,
            columns,
            stats,
            blob_id,
            stored.sha256,
        )
        con.execute(
            f"INSERT INTO snapshots ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                snap.name,
                snap.version,
                snap.content_hash,
                snap.created_at,
                snap.creator,
                snap.source,
                snap.description,
                snap.row_count,
                snap.byte_size,
                json.dumps(snap.columns),
                json.dumps(snap.profile),
                snap.blob,
                snap.file_sha256,
            ],
        )
        audit.record(con, "snapshot.registered", snap.ref, {"rows": row_count, "source": source})
    return snap


@remote_capable("get_snapshot")
def get(ref: str | Ref, ws: Workspace | None = None) -> Snapshot:
    """The snapshot a `name[@version|@latest]` reference points at."""
    ws = _ws(ws)
    parsed = ref if isinstance(ref, Ref) else parse_ref(ref, "snapshot")
    with connect(ws) as con:
        if parsed.version is None:
            row = con.execute(
                f"SELECT {_COLUMNS} FROM snapshots WHERE name = ? ORDER BY version DESC LIMIT 1",
                [parsed.name],
            ).fetchone()
        else:
            row = con.execute(
                f"SELECT {_COLUMNS} FROM snapshots WHERE name = ? AND version = ?",
                [parsed.name, parsed.version],
            ).fetchone()
        if row is None:
            versions = [
                v
                for (v,) in con.execute(
                    "SELECT version FROM snapshots WHERE name = ? ORDER BY version", [parsed.name]
                ).fetchall()
            ]
    if row is not None:
        return _from_row(row)
    if versions:
        raise NotFoundError(
            f"Snapshot {parsed} does not exist.",
            f"{parsed.name} has versions {', '.join(map(str, versions))}.",
        )
    raise NotFoundError(f"No snapshot named {parsed.name!r}.", "See 'workbench snapshot list' for what exists.")


@remote_capable("list_snapshot_records")
@cached_read(deep_copies)  # the Lab sidebar polls it
def list_snapshots(name: str | None = None, all_versions: bool = False, ws: Workspace | None = None) -> list[Snapshot]:
    """Latest version of each name (or every version), newest names first."""
    ws = _ws(ws)
    where, params = "", []
    if name is not None:
        validate_name(name, "snapshot name")
        where, params = "WHERE name = ?", [name]
    with connect(ws) as con:
        if all_versions:
            rows = con.execute(f"SELECT {_COLUMNS} FROM snapshots {where} ORDER BY name, version", params).fetchall()
        else:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM snapshots {where} "
                "QUALIFY row_number() OVER (PARTITION BY name ORDER BY version DESC) = 1 "
                "ORDER BY name",
                params,
            ).fetchall()
    return [_from_row(r) for r in rows]


def data_path(snap: Snapshot, ws: Workspace | None = None) -> Path:
    """The Parquet file holding a snapshot's rows, checked first (every reader comes here).

    Checked against the recorded file sha256, or for legacy rows by the data digest its blob id
    names; either way `BlobIntegrityError` if it does not match, `NotFoundError` if missing.
    """
    what = f"data of snapshot {snap.ref}"
    if snap.file_sha256:
        return blobs.verified_path(_ws(ws), snap.blob, snap.file_sha256, what)
    return blobs.verified_path(_ws(ws), snap.blob, blobs.expected_sha256(snap.blob), what, digest=data_digest)


@remote_capable("load_snapshot_frame")
def load(ref: str, ws: Workspace | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a snapshot into a pandas DataFrame (optionally only some columns)."""
    ws = _ws(ws)
    snap = get(ref, ws)
    return read_frame(snap, data_path(snap, ws), columns, ws)


def read_frame(
    snap: Snapshot, path: Path, columns: list[str] | None = None, ws: Workspace | None = None
) -> pd.DataFrame:
    """The rows of `snap` from its (checked) Parquet file `path`, read by DuckDB whether the file is
    in a workspace or a team server's download cache, so both give the same dtypes."""
    select = "*"
    if columns:
        known = {c["name"] for c in snap.columns}
        missing = [c for c in columns if c not in known]
        if missing:
            raise NotFoundError(
                f"Snapshot {snap.ref} has no column(s) {', '.join(missing)}.",
                f"Columns are: {', '.join(sorted(known))}.",
            )
        from workbench.snapshots.engine import quote_ident

        select = ", ".join(quote_ident(c) for c in columns)
    with engine(ws) as con:
        return con.execute(f"SELECT {select} FROM read_parquet({quote_literal(str(path))})").df()


@remote_capable("export_snapshot")
def export(ref: str, target: str | os.PathLike[str], ws: Workspace | None = None) -> Path:
    """Write a snapshot to a Parquet or CSV file (format from the extension)."""
    ws = _ws(ws)
    snap = get(ref, ws)
    return write_export(data_path(snap, ws), target, ws)


def write_export(path: Path, target: str | os.PathLike[str], ws: Workspace | None = None) -> Path:
    """Write the snapshot file `path` to `target` (.parquet or .csv), atomically."""
    out = Path(target).expanduser().absolute()
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise DataSourceError(
            f"Cannot export to {out.name}: unknown format {suffix or '(none)'!r}.",
            "Use a path ending in .parquet or .csv.",
        )
    if not out.parent.is_dir():
        raise DataSourceError(f"Folder {out.parent} does not exist.", "Create it first.")
    fmt = "PARQUET" if suffix == ".parquet" else "CSV, HEADER"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with engine(ws) as con:
            con.execute(
                f"COPY (SELECT * FROM read_parquet({quote_literal(str(path))})) "
                f"TO {quote_literal(str(tmp))} (FORMAT {fmt})"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out

"""The snapshots part of `RemoteStore` (see `remote.store`).

Records, diffs and SQL are answered by the server's routes (`server.routes_snapshots`). Data is
downloaded once into the private cache under the sha256 its record names (`cached_download`, kind
"snapshots") and read there by the same code that reads a workspace's file (`store.read_frame`,
`store.write_export`), so a loaded DataFrame has the same dtypes either way. A version (`wine@3`)
never changes, so its record is kept in memory for this process: loading it again needs no request
at all; `wine` (the latest) is asked for each time, one small GET.

Registering converts the data to Parquet here with the same DuckDB steps as a local registration
(same type inference for a CSV), uploads it, and the server checks the expectations and registers
all of it or nothing. `sql=` registration is refused: the server would have to run a query that
writes, which its SQL route never does; the hint says how to do it with `wb.sql`, which runs there.
"""

from __future__ import annotations

import copy
import io
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from workbench.errors import DataSourceError, WorkbenchError
from workbench.remote.client import Client, RemoteValidationError
from workbench.remote.config import Remote
from workbench.remote.downloads import cached_download

if TYPE_CHECKING:
    import pandas as pd

    from workbench.names import Ref
    from workbench.snapshots.differ import SnapshotDiff
    from workbench.snapshots.sources import Source
    from workbench.snapshots.store import Snapshot

PARQUET = "application/vnd.apache.parquet"


def _path(ref: str | Ref) -> str:
    """`ref` checked as the library checks it (same message, no request) and quoted for a URL."""
    from workbench.names import parse_ref

    parsed = ref if not isinstance(ref, str) else parse_ref(ref, "snapshot")
    return quote(str(parsed), safe="@")


def _sql_limits() -> tuple[int, float]:
    """The most rows `POST /sql` answers and the seconds it lets a query run (the server's own values)."""
    from workbench.server.routes_snapshots import SQL_TIMEOUT_S
    from workbench.server.schemas import SqlQuery

    most = next(m.le for m in SqlQuery.model_fields["limit"].metadata if getattr(m, "le", None) is not None)
    return most, SQL_TIMEOUT_S


class SnapshotsStore:
    """Snapshots read from and written to a team server."""

    remote: Remote
    client: Client

    def _versions(self) -> dict[str, Snapshot]:
        """Records of versions fetched by number (`wine@3`), which never change (see the module doc)."""
        return self.__dict__.setdefault("_snapshot_versions", {})

    def get_snapshot(self, ref: str | Ref) -> Snapshot:
        from workbench.snapshots.store import Snapshot

        path = _path(ref)
        known = self._versions().get(path)
        if known is None:
            known = Snapshot.from_dict(self.client.get(f"/snapshots/{path}"))
            if "@" in path and known.file_sha256:
                self._versions()[path] = known
        return copy.deepcopy(known)  # callers may change what they get, as with a local read

    def list_snapshot_records(self, name: str | None = None, all_versions: bool = False) -> list[Snapshot]:
        from workbench.names import validate_name
        from workbench.snapshots.store import Snapshot

        params: dict[str, Any] = {"all_versions": all_versions}
        if name is not None:
            params["name"] = validate_name(name, "snapshot name")
        return [Snapshot.from_dict(item) for item in self.client.get("/snapshots", params=params)]

    def _data_file(self, snap: Snapshot) -> Path:
        """The verified local copy of the Parquet file of `snap` (downloaded the first time only)."""
        return cached_download(self.client, f"/snapshots/{_path(snap.ref)}/data", "snapshots",
                               snap.file_sha256 or None, f"the data of snapshot {snap.ref}")  # fmt: skip

    def load_snapshot_frame(self, ref: str, columns: list[str] | None = None) -> pd.DataFrame:
        from workbench.snapshots.store import read_frame

        snap = self.get_snapshot(ref)
        return read_frame(snap, self._data_file(snap), columns)

    def export_snapshot(self, ref: str, target: str | Path) -> Path:
        from workbench.snapshots.store import write_export

        snap = self.get_snapshot(ref)
        return write_export(self._data_file(snap), target)

    def diff_snapshots(self, a_ref: str, b_ref: str, key: list[str] | str | None = None) -> SnapshotDiff:
        from workbench.snapshots.differ import SnapshotDiff

        keys = [key] if isinstance(key, str) else list(key or ())
        answer = self.client.get(f"/snapshots/{_path(a_ref)}/diff/{_path(b_ref)}", params={"key": keys})
        return SnapshotDiff.from_dict(answer)

    def sql(self, query: str, limit: int | None = None, timeout: float | None = None) -> pd.DataFrame:
        """`wb.sql` run by the server, its rows sent back as Parquet (so the dtypes are the same).

        The server answers at most its row limit: asking for more is refused, and a query without
        `limit` whose result is longer raises instead of returning part of it."""
        import pandas as pd

        if not isinstance(query, str) or not query.strip():
            raise DataSourceError("The SQL query is empty.", "Pass a SELECT statement.")
        most, server_timeout = _sql_limits()
        if limit is not None and not 0 < limit <= most:
            raise WorkbenchError(f"limit={limit} is outside what the team server answers (1 to {most:,} rows).",
                                 "Ask for fewer rows, or aggregate in the query.")  # fmt: skip
        params: dict[str, Any] = {"format": "parquet"}
        if timeout:
            params["timeout"] = min(timeout, server_timeout)
        response = self.client.request("POST", "/sql", params=params, json={"query": query, "limit": limit or most},
                                       idempotent=True, timeout=server_timeout + 30)  # fmt: skip
        if limit is None and response.headers.get("x-workbench-truncated") == "true":
            raise DataSourceError(f"The query's result has more than {most:,} rows, the most the team server "
                                  f"{self.remote.url} answers.",
                                  "Aggregate or filter in the query, or pass limit= for its first rows.")  # fmt: skip
        return pd.read_parquet(io.BytesIO(response.content))

    def register_snapshot(
        self,
        name: str,
        data: Any = None,
        *,
        sql: str | None = None,
        description: str | None = None,
        expectations: Any = None,
        source_label: str | None = None,
    ) -> Snapshot:
        """Upload `data` as the next version of `name` (see the module doc); the same answers and
        errors as a local registration, including `ValidationError.report` for failed expectations."""
        from workbench.snapshots.expectations import Failure, ValidationReport
        from workbench.snapshots.store import Snapshot, check_registration

        source, spec = check_registration(name, data, sql, description, expectations)
        if source.kind == "sql":
            raise WorkbenchError(f"The team server {self.remote.url} does not register the result of SQL.",
                                 f"Run the query there and register its rows: wb.snapshot({name!r}, "
                                 "wb.sql(query)).")  # fmt: skip
        params: dict[str, Any] = {"format": "parquet", "source": (source_label or source.describe())[:500]}
        if description is not None:
            params["description"] = description
        if spec:
            params["expectations"] = json.dumps(spec, default=str)
        with tempfile.TemporaryDirectory(prefix="workbench-upload-") as folder, \
                open(self._as_parquet(source, Path(folder)), "rb") as body:  # fmt: skip
            try:
                response = self.client.request("POST", f"/snapshots/{quote(name)}", params=params, content=body,
                                               headers={"content-type": PARQUET})  # fmt: skip
            except RemoteValidationError as exc:
                if isinstance(report := exc.body.get("validation"), dict):
                    failures = [Failure(**failure) for failure in report.get("failures", [])]
                    exc.report = ValidationReport(report.get("checked", 0), failures)
                raise
        return Snapshot.from_dict(response.json())

    @staticmethod
    def _as_parquet(source: Source, folder: Path) -> Path:
        """The Parquet file to upload: a Parquet path as it is, anything else written by DuckDB as a
        local registration writes it."""
        from workbench.snapshots.engine import engine, quote_literal
        from workbench.snapshots.sources import relation_sql, write_parquet

        if source.kind == "parquet":
            return Path(source.value)
        target = folder / "upload.parquet"
        with engine() as con:
            con.execute(f"SET temp_directory = {quote_literal(str(folder / 'duckdb'))}")
            label = "the DataFrame" if source.kind == "dataframe" else source.describe()
            write_parquet(con, relation_sql(con, source), target, label)
        return target

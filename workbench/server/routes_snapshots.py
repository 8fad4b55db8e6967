"""Snapshots: the list, one version, registering by upload, downloading the data, diffs, and SQL.

Thin adapters over the library the CLI and the Jupyter handlers use (`workbench.snapshots`):

- `POST /snapshots/{ref}` (REF a plain name) streams the body (CSV or Parquet) to a scratch file in the workspace's
  `tmp/` under the upload limit (`max_upload_bytes`, 413 beyond it, refused before reading when the
  declared length is already over), then `store.register`s it: identical content is the existing
  version (200, `created: false`), new content the next version (201). The scratch file is removed
  whatever happens, and registration itself leaves either a whole snapshot or none.
- `GET /snapshots/{ref}/data` streams the version's Parquet file (checked against its recorded hash
  first) with that sha256 as its `ETag` and `X-Workbench-Sha256`, and the data's content hash as
  `X-Workbench-Content-Hash`: a client verifies what it received and caches by hash
  (`If-None-Match` answers 304).
- `GET /snapshots/{ref}/diff/{other}` is `workbench snapshot diff REF OTHER --json`.
- `POST /sql` is `workbench.snapshots.query.sql`: one read-only SELECT over snapshots, which cannot
  read other files nor change anything (enforced by the library for every caller), as columns
  (`?format=parquet`: as a Parquet file, which keeps the dtypes for `wb.sql` on a client).

A snapshot's JSON is `Snapshot.to_dict()` plus `file_sha256`, the sha256 of its data file (null for
a legacy row without one): a client keeps downloaded data by that hash, so loading a version it
already has needs no request for the data (`remote.store_snapshots`).
"""

from __future__ import annotations

import io
import json
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from workbench.errors import DataSourceError, ValidationError
from workbench.httpapi import BodyTooLargeError, column_values
from workbench.names import validate_name
from workbench.server.auth import requires, workspace
from workbench.server.responses import fail, reply
from workbench.server.roles import EDITOR, VIEWER
from workbench.server.schemas import REFUSALS, SqlQuery
from workbench.workspace import Workspace, positive_setting

router = APIRouter(tags=["snapshots"], responses=REFUSALS)
_reading = Depends(requires(VIEWER, "reading snapshots"))

#: The largest upload `POST /snapshots/{name}` takes by default (`max_upload_bytes` changes it).
DEFAULT_MAX_UPLOAD_BYTES = 1024**3
#: Seconds a `POST /sql` query may run before it is stopped.
SQL_TIMEOUT_S = 60.0
#: What a request body may be, by `?format=` or its content type.
_FORMATS = {"csv": "csv", "text/csv": "csv", "application/csv": "csv",
            "parquet": "parquet", "application/vnd.apache.parquet": "parquet", "application/parquet": "parquet",
            "application/x-parquet": "parquet"}  # fmt: skip
_SUFFIX = {"csv": ".csv", "parquet": ".parquet"}


def max_upload_bytes(ws: Workspace) -> int:
    """The largest snapshot upload: `$WORKBENCH_MAX_UPLOAD_BYTES`, the workspace setting `max_upload_bytes`,
    else 1 GiB."""
    return positive_setting(ws, "max_upload_bytes", "WORKBENCH_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)


def record(snap: Any) -> dict[str, Any]:
    """A snapshot as the server answers it: `to_dict()` and the sha256 of its data file (see the module doc)."""
    return {**snap.to_dict(), "file_sha256": snap.file_sha256}


@router.get("/snapshots", dependencies=[_reading])
def list_snapshots(
    name: str | None = Query(None, description="Only this snapshot name."),
    all_versions: bool = Query(False, description="Every version, not only the latest of each name."),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """Registered snapshots: name, version, rows, columns, creator, source."""
    from workbench.snapshots.store import list_snapshots

    return reply([record(s) for s in list_snapshots(name or None, all_versions, ws)])


@router.get("/snapshots/{ref}", dependencies=[_reading])
def get_snapshot(ref: str, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """One snapshot version (`name`, `name@3`, `name@latest`): metadata, schema (`columns`) and column `profile`."""
    from workbench.snapshots.store import get

    return reply(record(get(ref, ws)))


def _upload_format(format: str | None, content_type: str | None) -> str:
    given = (format or (content_type or "").split(";")[0]).strip().lower()
    if given in _FORMATS:
        return _FORMATS[given]
    what = f"format {format!r}" if format else f"content type {content_type!r}" if content_type else "no content type"
    raise ValidationError(f"Cannot register a body with {what}.",
                          "Send CSV (Content-Type: text/csv) or Parquet (application/vnd.apache.parquet), "
                          "or say which with ?format=csv or ?format=parquet.")  # fmt: skip


def _expectations(text: str | None) -> dict[str, Any] | None:
    """`?expectations=` as the library takes it, but only inline JSON: never a path on the server."""
    if text is None or not text.strip():
        return None
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"expectations is not valid JSON: {exc}.",
                              'Pass a JSON object, e.g. {"not_null": ["id"]}.') from exc  # fmt: skip
    if not isinstance(spec, dict):
        raise ValidationError("expectations must be a JSON object.", 'E.g. {"not_null": ["id"], "min_rows": 10}.')
    from workbench.snapshots.expectations import load_expectations

    return load_expectations(spec)  # checked before the body is read


async def receive_upload(request: Request, ws: Workspace, suffix: str, then: Any) -> Any:
    """Stream the request body to a scratch file under the upload limit and return `then(path)`
    (run in a worker thread); the file is removed afterwards, whatever happens."""
    from workbench import blobs

    limit = max_upload_bytes(ws)
    too_large = BodyTooLargeError(f"The upload is larger than the server's limit of {limit:,} bytes.",
                                  "An admin raises it with WORKBENCH_MAX_UPLOAD_BYTES or the workspace "
                                  "setting max_upload_bytes.")  # fmt: skip
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    with blobs.temp_path(ws, suffix) as tmp:
        size = 0
        with open(tmp, "wb") as out:
            async for piece in request.stream():
                size += len(piece)
                if size > limit:
                    raise too_large
                out.write(piece)
        if size == 0:
            raise ValidationError("The request body is empty.", "Send the CSV or Parquet data as the body.")
        return await run_in_threadpool(then, tmp)


# `{ref}` like the GET beside it (OpenAPI forbids two templates of one path), but a plain NAME here.
@router.post("/snapshots/{ref}", status_code=201, dependencies=[Depends(requires(EDITOR, "registering snapshots"))],
             responses={200: {"description": "The same data is already registered: that version (`created` false)."},
                        413: REFUSALS[400] | {"description": "The body is over the upload limit."}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string", "format": "binary"}},
                 "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}}})  # fmt: skip
async def register_snapshot(
    ref: str,
    request: Request,
    format: str | None = Query(None, description="csv or parquet (default: from the Content-Type)."),
    description: str | None = Query(None, max_length=2000, description="What this version is."),
    expectations: str | None = Query(
        None, max_length=100_000, description='Expectations the data must meet, as JSON (e.g. {"not_null": ["id"]}).'
    ),
    source: str | None = Query(None, max_length=500, description="What the data was made from, for its record."),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """Register the body (CSV or Parquet) as the next version of the snapshot named REF (a plain
    name), as `workbench snapshot add`: identical data already registered under it is that version
    (200, `created` false); failing expectations register nothing (400 with the `validation` report)."""
    from workbench.snapshots.store import register

    name = validate_name(ref, "snapshot name")
    kind = _upload_format(format, request.headers.get("content-type"))
    spec = _expectations(expectations)

    def registered(path: Any) -> Any:
        return register(name, path, description=description, expectations=spec, ws=ws,
                        source_label=f"upload ({kind})" + (f": {source}" if source else ""))  # fmt: skip

    try:
        snap = await receive_upload(request, ws, _SUFFIX[kind], registered)
    except ClientDisconnect:  # nothing was registered, and nobody is left to answer
        return fail(400, "The upload was interrupted; nothing was registered.")
    except ValidationError as exc:
        if getattr(exc, "report", None) is None:
            raise
        return JSONResponse({"error": exc.message, "hint": exc.hint, "validation": exc.report.to_dict()}, 400)
    return reply(record(snap), status=201 if snap.created else 200)


_PARQUET = {200: {"content": {"application/vnd.apache.parquet": {}},
                  "description": "The Parquet file; `ETag` and `X-Workbench-Sha256` are its sha256."},
            304: {"description": "`If-None-Match` names this file's sha256: the client has it."}}  # fmt: skip


@router.get("/snapshots/{ref}/data", dependencies=[_reading], responses=_PARQUET)
def download_snapshot(
    ref: str,
    if_none_match: str | None = Header(None, description="An ETag the client has cached."),
    ws: Workspace = Depends(workspace),
) -> Response:
    """The data of a snapshot version as its Parquet file, checked against its recorded hash first."""
    from workbench import blobs
    from workbench.snapshots.store import data_path, get

    snap = get(ref, ws)
    path = data_path(snap, ws)
    sha256 = snap.file_sha256 or blobs.sha256_file(path)
    headers = {"ETag": f'"{sha256}"', "X-Workbench-Sha256": sha256, "X-Workbench-Content-Hash": snap.content_hash,
               "X-Workbench-Ref": snap.ref, "Cache-Control": "private, max-age=31536000, immutable"}  # fmt: skip
    if if_none_match and sha256 in {tag.strip().strip('"').removeprefix('W/"') for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type="application/vnd.apache.parquet", headers=headers,
                        filename=f"{snap.name}-{snap.version}.parquet")  # fmt: skip


@router.get("/snapshots/{ref}/diff/{other}", dependencies=[_reading])
def diff_snapshots(
    ref: str,
    other: str,
    key: list[str] | None = Query(None, description="Key column(s) matching rows (repeat, or comma-separated)."),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """What changed from REF to OTHER: schema, row counts, column profiles, and rows by key; the same
    as `workbench snapshot diff REF OTHER --json`."""
    from workbench.snapshots.differ import diff

    keys = [k.strip() for arg in key or () for k in arg.split(",") if k.strip()]
    return reply(diff(ref, other, key=keys or None, ws=ws).to_dict())


_SQL_PARQUET = {200: {"content": {"application/vnd.apache.parquet": {}},
                      "description": "With `?format=parquet`: the rows as a Parquet file; `X-Workbench-Rows` and "
                                     "`X-Workbench-Truncated` say how many and whether there were more."}}  # fmt: skip


@router.post("/sql", dependencies=[Depends(requires(VIEWER, "querying snapshots"))], responses=_SQL_PARQUET)
def query_snapshots(
    body: SqlQuery,
    format: Literal["json", "parquet"] = Query("json", description="json (columns) or parquet (a file)."),
    timeout: float | None = Query(None, gt=0, le=SQL_TIMEOUT_S, description="Seconds before the query is stopped."),
    ws: Workspace = Depends(workspace),
) -> Response:
    """One read-only SELECT over snapshots (`snapshot('name@2')`, or a snapshot name for its latest
    version), as `wb.sql`: anything else (COPY, ATTACH, INSTALL, SET, several statements, reading
    other files) is refused with 400. The answer, column by column: `{"columns": [name, ...],
    "types": [...], "data": [[every value of column 0], ...], "rows": n, "truncated": bool}`, at most
    `limit` rows (`truncated` says there were more); or with `?format=parquet` those rows as a Parquet
    file, which keeps their dtypes."""
    from workbench.snapshots.query import sql

    frame = sql(body.query, ws, limit=body.limit + 1, timeout=timeout or SQL_TIMEOUT_S)
    truncated = len(frame) > body.limit
    frame = frame.head(body.limit)
    if format == "parquet":
        return Response(_parquet(frame), media_type="application/vnd.apache.parquet",
                        headers={"X-Workbench-Rows": str(len(frame)),
                                 "X-Workbench-Truncated": str(truncated).lower()})  # fmt: skip
    data = [column_values(frame.iloc[:, index]) for index in range(frame.shape[1])]
    answer = {"columns": [str(c) for c in frame.columns], "types": [str(t) for t in frame.dtypes], "data": data,
              "rows": len(frame), "truncated": truncated, "limit": body.limit}  # fmt: skip
    return reply(answer, json_safe=True)


def _parquet(frame: Any) -> bytes:
    """A query result as Parquet bytes (with pandas' metadata, so dtypes come back the same)."""
    import pyarrow as pa

    out = io.BytesIO()
    try:
        frame.to_parquet(out, index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataSourceError(f"The query's result cannot be sent as Parquet: {str(exc).splitlines()[0]}",
                              "Cast that column to a plain type in the query, e.g. col::VARCHAR.") from exc  # fmt: skip
    return out.getvalue()

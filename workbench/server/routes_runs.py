"""Runs: the query (filter language, order, limit; as `wb.runs()` and the Jupyter runs table), one run, and
remote logging: a client's event file shipped in chunks, exactly once, and blobs uploaded by content hash."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from workbench.errors import ValidationError, WorkbenchError
from workbench.httpapi import error_body, runs_answer_json, runs_request, split_values
from workbench.runs.ids import check_run_id
from workbench.server.auth import requires, workspace
from workbench.server.responses import reply
from workbench.server.roles import EDITOR, MAINTAINER, VIEWER, allows
from workbench.server.schemas import REFUSALS, BlobOut, ErrorBody, EventChunk, EventsOffset, RunCancelled
from workbench.server.users import User
from workbench.workspace import Workspace

router = APIRouter(tags=["runs"], responses=REFUSALS)


@router.get("/runs", dependencies=[Depends(requires(VIEWER, "reading runs"))])
def list_runs(
    experiment: list[str] = Query([], description="Only these experiments (repeat, or a,b)."),
    filter: str | None = Query(None, description="e.g. metrics.accuracy > 0.9 and params.lr < 0.1"),
    order_by: list[str] = Query([], description="e.g. metrics.accuracy DESC (repeat for more keys)."),
    limit: str | None = Query(None, description="At most this many rows (default 500, at most 100,000)."),
    status: str | None = Query(None, description="Only runs with this status, e.g. finished."),
    format: str | None = Query(None, description="records (default: a list of rows) or columns."),
    run_id: list[str] = Query([], description="Only these runs, in this order (repeat); other filters are ignored."),
    min_max: bool = Query(False, description="Also metrics.<key>.min and .max (as wb.runs(include_min_max=True))."),
    ws: Workspace = Depends(workspace),
) -> Response:
    """Runs matching the filter: one object per run (params.*, metrics.*, tags.*), or column by column
    with `format=columns`. The same parameters and error messages as the JupyterLab runs table."""
    arguments, shape = runs_request(experiment, filter, order_by, limit, status, format)
    if run_id:
        arguments = {"run_ids": split_values(run_id)}
    if min_max:
        arguments["include_min_max"] = True
    return Response(runs_answer_json(arguments, shape, ws), media_type="application/json")


@router.get("/experiments", dependencies=[Depends(requires(VIEWER, "reading runs"))])
def experiments(ws: Workspace = Depends(workspace)) -> JSONResponse:
    """Every experiment with its run counts (finished, active, failed) and last activity."""
    from workbench.runs.query import experiments_summary

    return reply(experiments_summary(ws))


@router.get("/metric-counts", dependencies=[Depends(requires(VIEWER, "reading runs"))])
def metric_counts(
    run_id: list[str] = Query(..., description="The runs (repeat, or a,b)."), ws: Workspace = Depends(workspace)
) -> JSONResponse:
    """For each metric of these runs, the most points (steps) any one of them logged."""
    from workbench.runs.query import metric_point_counts

    return reply(metric_point_counts(split_values(run_id), ws))


@router.get("/metric-history", dependencies=[Depends(requires(VIEWER, "reading runs"))])
def metric_history(
    key: str = Query(..., description="The metric, e.g. loss."),
    run_id: list[str] = Query(..., description="The runs (repeat, or a,b)."),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """Every logged point of metric `key` of these runs, column by column: run_id, step, value."""
    from workbench.runs.store import metric_history

    frame = metric_history(split_values(run_id), key, ws)
    return reply({name: frame[name].tolist() for name in ("run_id", "step", "value")})


@router.get("/runs/{run_id}", dependencies=[Depends(requires(VIEWER, "reading runs"))])
def get_run(run_id: str, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """Everything one run recorded: params, metrics, tags, artifacts, inputs, environment."""
    from workbench.runs.store import get_run

    return reply(get_run(check_run_id(run_id), ws).to_dict())


@router.post("/runs/{run_id}/cancel", response_model=RunCancelled)
def cancel_run(
    run_id: str, user: User = Depends(requires(EDITOR, "cancelling runs")), ws: Workspace = Depends(workspace)
) -> JSONResponse:
    """Ask a queued or running run to stop (`cancelled` false: it had already ended). Only its creator or
    a maintainer may. The client executing it learns of it from the answer to its next chunk or
    keep-alive (`cancel`) and ends it `killed`, with its executed notebook; the audit log records who asked."""
    from workbench.runs.receive import NotYourRunError, request_cancel

    try:
        cancelled = request_cancel(ws, check_run_id(run_id), user.name, allows(user.role, MAINTAINER))
    except NotYourRunError as exc:
        return _chunk_refused(exc, 403)
    return reply({"run_id": run_id, "cancelled": cancelled})


# ----------------------------------------------------------------------------------------------
# Remote run logging: a run executes on a client, which ships its event file here (`runs.receive`).


def _chunk_refused(exc: WorkbenchError, status: int, size: int | None = None) -> JSONResponse:
    body = error_body(exc)
    return JSONResponse(body if size is None else {**body, "size": size}, status_code=status)


@router.get("/runs/{run_id}/events/offset", response_model=EventsOffset)
def events_offset(
    run_id: str, user: User = Depends(requires(EDITOR, "logging runs")), ws: Workspace = Depends(workspace)
) -> JSONResponse:
    """How many bytes of the run's event file the server has (0: none): where the client resumes."""
    from workbench.runs.receive import received_size

    return reply({"size": received_size(ws, check_run_id(run_id))})


_GAP = {
    "model": ErrorBody,
    "description": "The chunk does not start where the server's copy ends; `size` says where to resend from.",
}


@router.post("/runs/{run_id}/events", response_model=EventsOffset, responses={409: _GAP})
def append_events(
    run_id: str,
    chunk: EventChunk,
    user: User = Depends(requires(EDITOR, "logging runs")),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """Append a chunk of the run's event file, exactly once: only when `offset` is what the server has
    (a chunk it already has is acknowledged again, not appended; a gap is 409 with `size`). The run's
    creator is the authenticated user; only they or a maintainer may log to it. The run is indexed.
    `cancel` true: the run was asked to stop (`POST /runs/{run_id}/cancel`), the client cancels it."""
    from workbench.runs.receive import NotYourRunError, OffsetConflict, cancel_requested, receive

    try:
        size = receive(ws, check_run_id(run_id), chunk.offset, chunk.lines, user.name, allows(user.role, MAINTAINER))
    except OffsetConflict as exc:
        return _chunk_refused(exc, 409, exc.size)
    except NotYourRunError as exc:
        return _chunk_refused(exc, 403)
    return reply({"size": size, **({"cancel": True} if cancel_requested(ws, run_id) else {})})  # absent: false


def _blob_id(blob_id: str) -> str:
    from workbench import blobs

    if len(blobs.expected_sha256(blob_id)) != 64:
        raise ValidationError(f"Invalid blob id {blob_id!r}: not a sha256.", "A blob id is the sha256 (hex) of its "
                              "bytes, optionally with an extension such as .txt.")  # fmt: skip
    return blob_id


@router.head("/blobs/{blob_id}")
def has_blob(
    blob_id: str, _: User = Depends(requires(EDITOR, "uploading blobs")), ws: Workspace = Depends(workspace)
) -> Response:
    """200 if the server has this blob (content hash, e.g. `<sha256>.txt`), else 404: upload only what it lacks."""
    from workbench import blobs

    return Response(status_code=200 if blobs.exists(ws, _blob_id(blob_id)) else 404)


@router.get("/blobs/{blob_id}", responses={200: {"content": {"application/octet-stream": {}}}})
def get_blob(
    blob_id: str, _: User = Depends(requires(VIEWER, "reading blobs")), ws: Workspace = Depends(workspace)
) -> FileResponse:
    """A stored file by content hash (artifacts, notebooks, model files), as stored;
    `X-Workbench-Sha256` and the ETag are its sha256, for the client to verify."""
    from workbench import blobs
    from workbench.errors import NotFoundError

    path = blobs.blob_path(ws, _blob_id(blob_id))
    if not path.is_file():
        raise NotFoundError(f"No blob {blob_id} on this server.", "It is uploaded when the run that logged it syncs.")
    sha = blobs.expected_sha256(blob_id)
    return FileResponse(path, media_type="application/octet-stream",
                        headers={"X-Workbench-Sha256": sha, "ETag": f'"{sha}"'})  # fmt: skip


@router.put("/blobs/{blob_id}", response_model=BlobOut)
async def put_blob(
    blob_id: str,
    request: Request,
    _: User = Depends(requires(EDITOR, "uploading blobs")),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """Store the body under its content hash. The server hashes what it received and refuses (400) bytes
    that do not match the id; bodies over the blob size limit (`WORKBENCH_MAX_BLOB_BYTES`, workspace
    setting `max_blob_bytes`, default 1 GiB) are refused with 413."""
    from workbench.runs.receive import store_blob

    return reply(await store_blob(ws, _blob_id(blob_id), request.stream(), request.headers.get("content-length")))

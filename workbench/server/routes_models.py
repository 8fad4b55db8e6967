"""Models: the list, one model, promoting a run's model, moving an alias, rolling back, editing gates.

Who may move an alias depends on the alias (protected: maintainer, else editor), so it is in the
path, or for a promotion (`POST /promotions`, which may name no model: the artifact's name is the
default) in the body, where the auth dependency reads it. Gates are judged here, against the
server's catalog; their refusal is a 400 whose `gates` has every verdict, which the client raises
as the library's `GateRefused`. Writes are whole library operations, retried when the
catalog reports a conflict with a concurrent write (`retry_conflicts`).

Model servers following an alias from another machine (`workbench serve NAME@alias` with a server
configured) resolve the alias (`GET .../aliases/{alias}`), read what serving needs of a version
(`GET .../versions/{version}`: schema, metadata, card) and download its skops file (`.../file`, with
its sha256 in `X-Workbench-Sha256` and the ETag, so the client verifies it and caches it by hash),
then ship their prediction logs back (`POST .../predictions`, editor) for `workbench monitor` here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, JSONResponse

from workbench.catalog.connection import retry_conflicts
from workbench.names import validate_name
from workbench.server.auth import moves_alias, requires, workspace
from workbench.server.responses import reply
from workbench.server.roles import EDITOR, MAINTAINER, VIEWER
from workbench.server.schemas import (
    REFUSALS,
    AliasMove,
    EventsOffset,
    GatesEdit,
    GatesOut,
    ModelVersionOut,
    PredictionChunk,
    Promotion,
    Rollback,
)
from workbench.workspace import Workspace

router = APIRouter(tags=["models"], responses=REFUSALS)

_GATES_REFUSED = {400: {"description": "A bad request, or refused by the model's gates: `gates` has each verdict."}}
_reading = Depends(requires(VIEWER, "reading models"))


@router.get("/models", dependencies=[_reading])
def list_models(ws: Workspace = Depends(workspace)) -> JSONResponse:
    """Every model with its latest version, aliases, gates and description."""
    from workbench.models.registry import list_models

    return reply(list_models(ws))


@router.get("/models/{name}", dependencies=[_reading])
def get_model(name: str, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """One model: its versions (newest first, with their runs and metrics), aliases and alias history."""
    from workbench.models.registry import get_model

    return reply(get_model(validate_name(name, "model name"), ws))


@router.put("/models/{name}/aliases/{alias}", response_model=ModelVersionOut, dependencies=[Depends(moves_alias)],
            responses=_GATES_REFUSED)  # fmt: skip
def set_alias(name: str, alias: str, body: AliasMove, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    """Point ALIAS of NAME at a registered version (audited). Needs role editor, or maintainer for a
    protected alias (by default `production`). The model's live gate is judged here, on this
    workspace's prediction and outcome logs: a refusal is 400 with `gates`; `force` overrides it."""
    from workbench.models.registry import set_alias

    validate_name(name, "model name")
    moved = retry_conflicts(lambda: set_alias(name, alias, body.version, reason=body.reason, by=body.by,
                                              force=body.force, ws=ws))  # fmt: skip
    return {**moved.to_dict(), "alias": alias}


@router.post("/promotions", dependencies=[Depends(moves_alias)], responses=_GATES_REFUSED)
def promote(body: Promotion, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """Register the finished run's model artifact as the next version of the model (the artifact's
    name by default) and move `alias` to it, as `workbench promote`. The model's gates are checked
    here: a refusal is 400 with `gates`, every gate's verdict (and is audited); `force` overrides
    them (audited too). Needs role editor, or maintainer for a protected alias."""
    from workbench.models.registry import promote

    version = retry_conflicts(lambda: promote(body.run_id, body.model, alias=body.alias, reason=body.reason,
                                              artifact=body.artifact, force=body.force, ws=ws))  # fmt: skip
    return reply({**version.to_dict(), "alias": body.alias})


@router.post("/models/{name}/aliases/{alias}/rollback", response_model=ModelVersionOut,
             dependencies=[Depends(requires(MAINTAINER, "rolling back"))])  # fmt: skip
def rollback(name: str, alias: str, body: Rollback, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    """Move ALIAS of NAME back to the version it pointed at before (or to `to`); audited."""
    from workbench.models.registry import rollback

    validate_name(name, "model name")
    back = retry_conflicts(lambda: rollback(name, alias, to=body.to, reason=body.reason, ws=ws))
    return {**back.to_dict(), "alias": alias}


@router.put("/models/{name}/gates", response_model=GatesOut,
            dependencies=[Depends(requires(MAINTAINER, "editing gates"))])  # fmt: skip
def set_gates(name: str, body: GatesEdit, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    """Replace the promotion gates of NAME (null removes them); audited."""
    from workbench.models.registry import set_gates

    gates = retry_conflicts(lambda: set_gates(name, body.gates, description=body.description, ws=ws))
    return {"name": name, "gates": gates}


def _served(version: Any) -> dict[str, Any]:
    from workbench import blobs

    return {**version.to_dict(), "sha256": blobs.expected_sha256(version.blob)}


@router.get("/models/{name}/aliases/{alias}", dependencies=[_reading])
def get_alias(name: str, alias: str, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """The version ALIAS of NAME points at now (with the sha256 of its file)."""
    from workbench.models.registry import get_version

    validate_name(name, "model name")
    version = get_version(f"{name}@{validate_name(alias, 'alias')}", ws)
    return reply({**_served(version), "alias": alias})


@router.get("/models/{name}/latest", dependencies=[_reading])
def get_latest(name: str, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """The newest version of NAME (with the sha256 of its file)."""
    from workbench.models.registry import get_version

    return reply(_served(get_version(validate_name(name, "model name"), ws)))


@router.get("/models/{name}/versions/{version}", dependencies=[_reading])
def get_model_version(name: str, version: int, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """What serving a version needs besides its file: schema and metadata (`meta`), metrics, lineage,
    the sha256 of its file, and its model card (Markdown)."""
    from workbench.models.card import model_card
    from workbench.models.registry import get_version

    found = get_version(f"{validate_name(name, 'model name')}@{int(version)}", ws)
    return reply({**_served(found), "card": model_card(found.ref, "markdown", ws)})


@router.get("/models/{name}/versions/{version}/file", dependencies=[_reading],
            responses={200: {"content": {"application/octet-stream": {}}}})  # fmt: skip
def download_model_version(name: str, version: int, ws: Workspace = Depends(workspace)) -> FileResponse:
    """The version's model file (skops) as stored; `X-Workbench-Sha256` and the ETag are its sha256."""
    from workbench import blobs
    from workbench.errors import NotFoundError
    from workbench.models.registry import get_version

    found = get_version(f"{validate_name(name, 'model name')}@{int(version)}", ws)
    path = blobs.blob_path(ws, found.blob)
    if not path.is_file():
        raise NotFoundError(f"The model file of {found.ref} is missing on the server.", "Run 'workbench doctor' there.")
    sha = blobs.expected_sha256(found.blob)
    return FileResponse(path, media_type="application/octet-stream", filename=f"{name}-{found.version}.skops",
                        headers={"X-Workbench-Sha256": sha, "ETag": f'"{sha}"'})  # fmt: skip


@router.post("/models/{name}/predictions", response_model=EventsOffset,
             dependencies=[Depends(requires(EDITOR, "uploading prediction logs"))])  # fmt: skip
def upload_predictions(name: str, chunk: PredictionChunk, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """Append a batch of a model server's prediction log (its file `stream` from byte `offset`), exactly
    once: a batch the server has is acknowledged again, not stored twice; a gap is 409 with `size`.
    Records are checked (JSON objects with at, request_id, version, latency_ms, input, prediction; at
    most 10,000 a batch). `workbench monitor NAME` on the server reads them."""
    from workbench.httpapi import error_body
    from workbench.serving.predlog import PredictionOffsetConflict, receive

    try:
        size = receive(ws, validate_name(name, "model name"), chunk.stream, chunk.offset, chunk.lines)
    except PredictionOffsetConflict as exc:
        return JSONResponse({**error_body(exc), "size": exc.size}, status_code=409)
    return reply({"size": size})

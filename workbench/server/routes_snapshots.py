"""Snapshots: the list (latest version of each, or every version) and one version with its schema and profile."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from workbench.server.auth import requires, workspace
from workbench.server.responses import reply
from workbench.server.roles import VIEWER
from workbench.server.schemas import REFUSALS
from workbench.workspace import Workspace

router = APIRouter(tags=["snapshots"], responses=REFUSALS)
_reading = Depends(requires(VIEWER, "reading snapshots"))


@router.get("/snapshots", dependencies=[_reading])
def list_snapshots(
    name: str | None = Query(None, description="Only this snapshot name."),
    all_versions: bool = Query(False, description="Every version, not only the latest of each name."),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """Registered snapshots: name, version, rows, columns, creator, source."""
    from workbench.snapshots.store import list_snapshots

    return reply([s.to_dict() for s in list_snapshots(name or None, all_versions, ws)])


@router.get("/snapshots/{ref}", dependencies=[_reading])
def get_snapshot(ref: str, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """One snapshot version (`name`, `name@3`, `name@latest`): metadata, schema (`columns`) and column `profile`."""
    from workbench.snapshots.store import get

    return reply(get(ref, ws).to_dict())

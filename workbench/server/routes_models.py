"""Models: the list, one model, moving an alias, rolling back, editing gates.

Who may move an alias depends on the alias (protected: maintainer, else editor), so it is in the
path, where the auth dependency reads it. Writes are whole library operations, retried when the
catalog reports a conflict with a concurrent write (`retry_conflicts`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from workbench.catalog.connection import retry_conflicts
from workbench.names import validate_name
from workbench.server.auth import moves_alias, requires, workspace
from workbench.server.responses import reply
from workbench.server.roles import MAINTAINER, VIEWER
from workbench.server.schemas import REFUSALS, AliasMove, GatesEdit, GatesOut, ModelVersionOut, Rollback
from workbench.workspace import Workspace

router = APIRouter(tags=["models"], responses=REFUSALS)
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


@router.put("/models/{name}/aliases/{alias}", response_model=ModelVersionOut, dependencies=[Depends(moves_alias)])
def set_alias(name: str, alias: str, body: AliasMove, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    """Point ALIAS of NAME at a registered version (audited). Needs role editor, or maintainer for a
    protected alias (by default `production`)."""
    from workbench.models.registry import set_alias

    validate_name(name, "model name")
    moved = retry_conflicts(lambda: set_alias(name, alias, body.version, reason=body.reason, ws=ws))
    return {**moved.to_dict(), "alias": alias}


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

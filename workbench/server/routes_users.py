"""Users (admin only) and who the caller is (anyone with a token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from workbench.catalog.connection import retry_conflicts
from workbench.server import users
from workbench.server.auth import requires, workspace
from workbench.server.roles import ADMIN, VIEWER
from workbench.server.schemas import REFUSALS, Me, NewUser, NewUserOut, UserOut
from workbench.workspace import Workspace

router = APIRouter(tags=["users"], responses=REFUSALS)
_managing = Depends(requires(ADMIN, "managing users"))


@router.get("/me", response_model=Me)
def me(user: users.User = Depends(requires(VIEWER, "asking who you are"))) -> dict[str, Any]:
    """The user the token belongs to, and their role."""
    return {"name": user.name, "role": user.role}


@router.get("/users", response_model=list[UserOut], dependencies=[_managing])
def list_users(ws: Workspace = Depends(workspace)) -> list[dict[str, Any]]:
    """Every user, active or revoked (never a token)."""
    return [u.to_dict() for u in users.list_users(ws)]


@router.post("/users", response_model=NewUserOut, status_code=201, dependencies=[_managing])
def add_user(body: NewUser, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    """Add a user (or give a revoked one a new start); the answer holds their token, shown only here."""
    user, token = retry_conflicts(lambda: users.add_user(body.name, body.role, ws))
    return {**user.to_dict(), "token": token}


@router.delete("/users/{name}", response_model=UserOut, dependencies=[_managing])
def revoke_user(name: str, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    """Revoke NAME's token: it stops working at the next request."""
    return retry_conflicts(lambda: users.revoke_user(name, ws)).to_dict()

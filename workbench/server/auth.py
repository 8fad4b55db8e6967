"""The one place a request of the team server is checked: a FastAPI dependency per route.

Every route under `/api/v1/` declares what it needs, `Depends(requires(VIEWER, "reading runs"))`
or `Depends(moves_alias)`, never a check inside its handler. The dependency

1. authenticates the bearer token: missing, unknown or revoked is 401 (the token is looked up at
   every request, so a revocation takes effect at once);
2. refuses a role too low with 403, naming what was refused, the role needed and the user's:
   "moving alias 'production' needs role maintainer; you are editor.";
3. makes the user the actor of everything the request records (`identity.acting_as`: audit
   entries, alias history, creators), for the request's worker thread and nothing else.

`app.create_app` refuses to build an app with a route under `/api/v1/` that lacks one of these.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from workbench.identity import acting_as
from workbench.server.roles import EDITOR, ROLES, alias_role, allows, refusal
from workbench.server.users import User, authenticate
from workbench.workspace import Workspace

_bearer = HTTPBearer(auto_error=False, description="A token from `workbench server user add NAME --role ROLE`.")
#: Marks the dependencies made here, so the app can check that every route has one.
ROLE_CHECK = "_workbench_role_check"


class Refused(Exception):
    """A request refused before its handler ran: 401 (who are you?) or 403 (not with your role)."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}


def workspace(request: Request) -> Workspace:
    """The workspace this server owns."""
    return request.app.state.ws


async def _user(request: Request, credentials: HTTPAuthorizationCredentials | None) -> User:
    if credentials is None:
        raise Refused(401, "A bearer token is required.",
                      "Send 'Authorization: Bearer TOKEN'; an admin creates tokens with "
                      "'workbench server user add NAME --role ROLE'.")  # fmt: skip
    user = await asyncio.to_thread(authenticate, credentials.credentials, workspace(request))
    if user is None:
        raise Refused(401, "The bearer token is unknown or revoked.", "Ask an admin of this server for a token.")
    return user


def _checked(
    role: str, what: str | Callable[[Request], Awaitable[tuple[str, str]]]
) -> Callable[..., AsyncIterator[User]]:
    async def check(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> AsyncIterator[User]:
        user = await _user(request, credentials)
        needed, action = (await what(request)) if callable(what) else (role, what)
        if not allows(user.role, needed):
            raise Refused(403, refusal(action, needed, user.role),
                          f"Ask an admin of this server for role {needed}.")  # fmt: skip
        with acting_as(user.name):
            yield user

    setattr(check, ROLE_CHECK, role)
    return check


def requires(role: str, what: str) -> Callable[..., AsyncIterator[User]]:
    """A dependency admitting users with at least `role`; `what` names the action in a refusal."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    return _checked(role, what)


async def _alias_move(request: Request) -> tuple[str, str]:
    alias = request.path_params.get("alias")
    if alias is None:  # a promotion: the alias is in the JSON body (one the schema refuses moves nothing)
        try:
            body = await request.json()
        except ValueError:
            body = None
        alias = body.get("alias") if isinstance(body, dict) else None
        if not isinstance(alias, str):
            return EDITOR, "registering a model version"
    return alias_role(alias, request.app.state.protected_aliases), f"moving alias {alias!r}"


#: Moving the alias in the route's path (or, without one, the body's `alias`): maintainer for a
#: protected alias, else editor.
moves_alias = _checked("editor or maintainer (protected aliases)", _alias_move)


def role_of(dependency: Any) -> str | None:
    """The role a dependency made here checks (None: not one of them)."""
    return getattr(dependency, ROLE_CHECK, None)

"""The team server's FastAPI app: `/health` and the versioned API under `/api/v1/`.

`/health` is the only route that answers without a token. Everything under `/api/v1/`, its
OpenAPI description (`/api/v1/openapi.json`) and interactive docs (`/api/v1/docs`) included, needs
one; `create_app` refuses to build an app in which a route lacks its role dependency, and writes
the role each route needs into its OpenAPI description.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute

from workbench.server import (
    routes_audit,
    routes_backup,
    routes_changes,
    routes_models,
    routes_monitor,
    routes_runs,
    routes_snapshots,
    routes_sweeps,
    routes_users,
)
from workbench.server.auth import requires, role_of
from workbench.server.responses import LimitBody, install_error_handlers
from workbench.server.roles import DEFAULT_PROTECTED_ALIASES, VIEWER
from workbench.server.schemas import Health
from workbench.workspace import Workspace

API_PREFIX = "/api/v1"
ROUTERS = (routes_runs, routes_snapshots, routes_models, routes_monitor, routes_audit, routes_changes, routes_users,
           routes_backup, routes_sweeps)  # fmt: skip


def _docs_router(app: FastAPI) -> APIRouter:
    """The OpenAPI description and Swagger UI, behind a token like the rest of the API."""
    router = APIRouter(include_in_schema=False, dependencies=[Depends(requires(VIEWER, "reading the API docs"))])

    @router.get("/openapi.json")
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{API_PREFIX}/openapi.json", title=f"{app.title} - API")

    return router


def _role_needed(route: APIRoute) -> str | None:
    found = [role_of(d.call) for d in route.dependant.dependencies]
    return next((role for role in found if role), None)


def _guarded(router: APIRouter) -> APIRouter:
    """`router`, checked: each of its routes has a role dependency (a route without one would answer
    anybody), and its OpenAPI description says which role."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        role = _role_needed(route)
        if role is None:
            raise RuntimeError(f"{sorted(route.methods)} {API_PREFIX}{route.path} has no role dependency "
                               "(workbench.server.auth)")  # fmt: skip
        needs = f"Needs role: **{role}**."
        if needs not in (route.description or ""):  # the routers are built once per process, apps maybe more
            route.description = f"{route.description or ''}\n\n{needs}".strip()
    return router


def create_app(ws: Workspace, protected_aliases: Sequence[str] = DEFAULT_PROTECTED_ALIASES) -> FastAPI:
    """The app serving `ws` (whose catalog the caller holds open) with these protected aliases."""
    from workbench import __version__

    app = FastAPI(
        title="Workbench team server",
        version=__version__,
        description="Runs, snapshots, models and the audit log of one Workbench workspace, for a team. "
        "Send `Authorization: Bearer TOKEN` (from `workbench server user add NAME --role ROLE`) with every "
        "request except `/health`.",
        openapi_url=None,  # served behind the token by _docs_router
        docs_url=None,
        redoc_url=None,
    )
    app.state.ws = ws
    app.state.protected_aliases = tuple(protected_aliases)
    install_error_handlers(app)

    @app.get("/health", response_model=Health, tags=["health"])
    def health() -> dict[str, Any]:
        """Whether the server is up (the only route without a token)."""
        return {"status": "ok"}

    for router in (*(module.router for module in ROUTERS), _docs_router(app)):
        app.include_router(_guarded(router), prefix=API_PREFIX)
    app.add_middleware(LimitBody)
    return app

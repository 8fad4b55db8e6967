"""REST handlers of the JupyterLab extension: thin adapters from HTTP to library calls.

Every handler authenticates (`@tornado.web.authenticated`: no token, 403), parses its input,
calls one library function in a worker thread (DuckDB and file I/O block, and the Jupyter
server must keep serving kernels and other tabs meanwhile) and returns JSON. Errors a user can
act on (`WorkbenchError`) become `400 {"error", "hint"}` (`NotFoundError`: 404), plus `field` when
the error is about one input of the Run dialog and `gates` when a promotion was refused, so the UI
can show it where the user acted; anything else is a bug and keeps jupyter_server's usual 500 with
a traceback in the log.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.utils import url_path_join

from workbench.jupyter.base import API_PREFIX, WorkbenchHandler, WorkspaceHolder, guarded, team_server
from workbench.jupyter.model_handlers import (
    ModelHandler,
    ModelsHandler,
    PromoteHandler,
    RollbackHandler,
    ServingHandler,
    SetAliasHandler,
)
from workbench.jupyter.monitor_handlers import MonitorHandler
from workbench.jupyter.run_handlers import (
    CompareHandler,
    ExperimentsHandler,
    NotebookParametersHandler,
    RunCancelHandler,
    RunHandler,
    RunMetricHandler,
    RunNotebookHandler,
    RunRerunHandler,
    RunsHandler,
    SweepsHandler,
)
from workbench.jupyter.snapshot_handlers import SnapshotDiffHandler, SnapshotHandler, SnapshotsHandler

# --------------------------------------------------------------------------------------------
# Where this lab reads and writes


class StatusHandler(WorkbenchHandler):
    """GET status: what the lab works on, for the sidebar's header. With a team server
    `{"server": {url, source, user, role, error}, "workspace": null}` (`error`: why the server did not
    say who the token is, e.g. it refused it), else `{"server": null, "workspace": <folder>}`. Never
    creates the workspace folder."""

    @tornado.web.authenticated
    @guarded
    async def get(self) -> None:
        self.reply(await asyncio.to_thread(self.where))

    def where(self) -> dict[str, Any]:
        from workbench.remote.client import RemoteError
        from workbench.remote.dispatch import store_for

        remote = team_server()
        if remote is None:
            return {"server": None, "workspace": str(self.holder.home())}
        server: dict[str, Any] = {"url": remote.url, "source": remote.source, "user": None, "role": None, "error": None}
        try:
            me = store_for(remote).client.me()
            server.update(user=me.get("name"), role=me.get("role"))
        except RemoteError as exc:
            server["error"] = str(exc)
        return {"server": server, "workspace": None}


# --------------------------------------------------------------------------------------------
# Routes

ROUTES: list[tuple[str, type[WorkbenchHandler]]] = [
    (r"status", StatusHandler),
    (r"snapshots", SnapshotsHandler),
    (r"snapshots/diff", SnapshotDiffHandler),
    (r"snapshots/(?P<ref>[^/]+)", SnapshotHandler),
    (r"runs", RunsHandler),
    (r"runs/(?P<run_id>[^/]+)", RunHandler),
    (r"runs/(?P<run_id>[^/]+)/notebook", RunNotebookHandler),
    (r"runs/(?P<run_id>[^/]+)/metrics/(?P<key>.+)", RunMetricHandler),
    (r"runs/(?P<run_id>[^/]+)/cancel", RunCancelHandler),
    (r"runs/(?P<run_id>[^/]+)/rerun", RunRerunHandler),
    (r"sweeps", SweepsHandler),
    (r"experiments", ExperimentsHandler),
    (r"notebooks/parameters", NotebookParametersHandler),
    (r"compare", CompareHandler),
    (r"models", ModelsHandler),
    (r"models/promote", PromoteHandler),
    (r"models/(?P<name>[^/]+)", ModelHandler),
    (r"models/(?P<name>[^/]+)/rollback", RollbackHandler),
    (r"models/(?P<name>[^/]+)/alias", SetAliasHandler),
    (r"models/(?P<name>[^/]+)/monitor", MonitorHandler),
    (r"serving", ServingHandler),
]


def _warm_up() -> None:
    """Import the compare module and build one plotly figure in the background.

    The first Compare of a server process otherwise pays ~0.5 s of imports (pandas, plotly) and
    plotly's template set-up inside the user's click (measured in the extension benchmark).
    """
    try:
        import plotly.graph_objects as go

        import workbench.compare  # noqa: F401  (imported for its side effect: loaded once, here)

        go.Figure().update_layout(title="warm-up").to_json()
    except Exception:  # an optional module missing: the handler reports it on real use
        pass


def setup_handlers(serverapp: Any) -> None:
    """Add the Workbench routes to the Jupyter server's web application."""
    web_app = serverapp.web_app
    base_url = web_app.settings["base_url"]
    holder = WorkspaceHolder(Path(serverapp.root_dir).expanduser().absolute())
    handlers = [
        (url_path_join(base_url, API_PREFIX, pattern) + "/?$", handler, {"holder": holder})
        for pattern, handler in ROUTES
    ]
    web_app.add_handlers(".*$", handlers)
    threading.Thread(target=_warm_up, name="workbench-warm-up", daemon=True).start()
    remote = _configured_server(serverapp)
    where = f"team server {remote.url} ({remote.source})" if remote is not None else f"workspace {holder.home()}"
    serverapp.log.info("Workbench REST API at %s (%s)", url_path_join(base_url, API_PREFIX), where)


def _configured_server(serverapp: Any) -> Any:
    """The team server the lab starts with, for its log line (a misconfiguration is logged, and each
    request answers it as a 400)."""
    from workbench.errors import WorkbenchError

    try:
        return team_server()
    except WorkbenchError as exc:
        serverapp.log.warning("Workbench: %s", exc)
        return None

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

import threading
from pathlib import Path
from typing import Any

from jupyter_server.utils import url_path_join

from workbench.jupyter.base import API_PREFIX, WorkbenchHandler, WorkspaceHolder
from workbench.jupyter.model_handlers import (
    ModelHandler,
    ModelsHandler,
    PromoteHandler,
    RollbackHandler,
    ServingHandler,
    SetAliasHandler,
)
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
# Routes

ROUTES: list[tuple[str, type[WorkbenchHandler]]] = [
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
    serverapp.log.info("Workbench REST API at %s (workspace %s)", url_path_join(base_url, API_PREFIX), holder.home())

"""REST handlers of the JupyterLab extension: thin adapters from HTTP to library calls.

Every handler authenticates (`@tornado.web.authenticated`: no token, 403), parses its input,
calls one library function in a worker thread (DuckDB and file I/O block, and the Jupyter
server must keep serving kernels and other tabs meanwhile) and returns JSON. Errors a user can
act on (`WorkbenchError`) become `400 {"error", "hint"}` (`NotFoundError`: 404); anything else
is a bug and keeps jupyter_server's usual 500 with a traceback in the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import inspect
import json
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from workbench.errors import NotFoundError, ValidationError, WorkbenchError
from workbench.workspace import DEFAULT_DIRNAME, ENV_HOME, Workspace, init_workspace

API_PREFIX = "workbench/api"
#: Most rows the runs table asks for when the client gives no limit: keeps polling cheap.
DEFAULT_RUNS_LIMIT = 500


class ModelRegistryMissing(Exception):
    """An optional module (model registry, serving, compare) is not importable in this install."""


# --------------------------------------------------------------------------------------------
# JSON


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from library results: NaN/NaT -> null, datetimes -> ISO text, numpy -> Python.

    Strict JSON (no `NaN` tokens) matters because browsers' `JSON.parse` rejects them.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "to_dict") and callable(value.to_dict) and not _is_pandas(value):
        return to_jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    try:
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return frame_records(value)
        if value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a hard dependency
        pass
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return to_jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist"):  # numpy arrays
        return to_jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.startswith("pandas")


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame as a list of row dicts with JSON-safe values (missing -> null)."""
    import pandas as pd

    records = frame.astype(object).to_dict(orient="records")
    out = []
    for row in records:
        clean = {}
        for key, cell in row.items():
            if not isinstance(cell, (list, dict, tuple)) and pd.isna(cell):
                clean[str(key)] = None
            else:
                clean[str(key)] = to_jsonable(cell)
        out.append(clean)
    return out


# --------------------------------------------------------------------------------------------
# Workspace


class WorkspaceHolder:
    """Resolves the server's workspace once, creating it on first use.

    `$WORKBENCH_HOME` wins (as everywhere in Workbench); otherwise the workspace is
    `<server root>/.workbench`, which is also what a kernel started in that tree finds by
    walking up from its notebook's folder.
    """

    def __init__(self, root_dir: Path) -> None:
        self.root_dir = root_dir
        self._ws: Workspace | None = None
        self._lock = threading.Lock()

    def home(self) -> Path:
        env = os.environ.get(ENV_HOME)
        return Path(env).expanduser().absolute() if env else self.root_dir / DEFAULT_DIRNAME

    def get(self) -> Workspace:
        home = self.home()
        with self._lock:
            if self._ws is None or self._ws.root != home or not self._ws.config_path.is_file():
                self._ws = init_workspace(home)
            return self._ws


# --------------------------------------------------------------------------------------------
# Base handler


def _call_with_ws(fn: Callable[..., Any], *args: Any, ws: Workspace, **kwargs: Any) -> Any:
    """Call `fn`, passing the server's workspace if `fn` takes a `ws` argument.

    The model registry and serving modules may not take `ws`; for those, the process default
    (`use_workspace`, set when the handler starts) is the same workspace.
    """
    try:
        takes_ws = "ws" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_ws = False
    if takes_ws:
        kwargs["ws"] = ws
    return fn(*args, **kwargs)


class WorkbenchHandler(APIHandler):
    """Common plumbing: workspace, threaded library calls, JSON replies, error mapping."""

    holder: WorkspaceHolder

    def initialize(self, holder: WorkspaceHolder) -> None:
        self.holder = holder

    @property
    def server_root(self) -> Path:
        return self.holder.root_dir

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking library call with the workspace in a worker thread."""

        def work() -> Any:
            ws = self.holder.get()
            from workbench.workspace import use_workspace

            use_workspace(ws)
            return _call_with_ws(fn, *args, ws=ws, **kwargs)

        return await asyncio.to_thread(work)

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(to_jsonable(data), allow_nan=False))

    def fail(self, status: int, message: str, hint: str | None = None) -> None:
        self.reply({"error": message, "hint": hint}, status)

    async def guard(self, coro: Any) -> None:
        """Await a handler body, turning user-facing errors into JSON 4xx replies."""
        try:
            await coro
        except NotFoundError as exc:
            self.fail(404, exc.message, exc.hint)
        except WorkbenchError as exc:
            self.fail(400, exc.message, exc.hint)
        except ModelRegistryMissing as exc:
            self.fail(501, str(exc), "This Workbench installation lacks that feature.")

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or a 400-worthy ValidationError."""
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise ValidationError(f"The request body is not valid JSON: {exc}.") from exc
        if not isinstance(body, dict):
            raise ValidationError("The request body must be a JSON object.")
        return body

    def resolve_notebook(self, path: Any) -> Path:
        """A notebook path relative to the server root, refused if it is absolute or escapes it."""
        if not isinstance(path, str) or not path.strip():
            raise ValidationError("A notebook path is required.", "Pass the path relative to the Jupyter root.")
        relative = Path(path.strip())
        if relative.is_absolute():
            raise ValidationError(f"Notebook path {path!r} must be relative to the Jupyter root.")
        root = self.server_root.resolve()
        target = (root / relative).resolve()
        if target != root and root not in target.parents:
            raise ValidationError(f"Notebook path {path!r} is outside the Jupyter root.", "Pick a notebook in it.")
        if target.suffix != ".ipynb":
            raise ValidationError(f"{relative.name} is not a notebook (.ipynb).")
        if not target.is_file():
            raise NotFoundError(f"Notebook not found: {path}.", "Check the path relative to the Jupyter root.")
        return target


def _optional_import(module: str, name: str) -> Callable[..., Any]:
    """A function from a module that may not exist in this install (model registry, serving)."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ModelRegistryMissing(f"{module}.{name} is not available: {exc}.") from exc


# --------------------------------------------------------------------------------------------
# Snapshots


class SnapshotsHandler(WorkbenchHandler):
    """GET snapshots: latest version of every snapshot (`?all_versions=1`, `?name=`)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        async def body() -> None:
            from workbench.snapshots.store import list_snapshots

            name = self.get_query_argument("name", None) or None
            all_versions = self.get_query_argument("all_versions", "0").lower() in ("1", "true", "yes")
            snaps = await self.call(list_snapshots, name, all_versions)
            self.reply([s.to_dict() for s in snaps])

        await self.guard(body())


class SnapshotHandler(WorkbenchHandler):
    """GET snapshots/<ref>: one version's metadata, schema and column profile."""

    @tornado.web.authenticated
    async def get(self, ref: str) -> None:
        await self.show(ref)

    async def show(self, ref: str) -> None:
        async def body() -> None:
            from workbench.snapshots.store import get

            snap = await self.call(get, ref)
            self.reply(snap.to_dict())

        await self.guard(body())


class SnapshotDiffHandler(SnapshotHandler):
    """GET snapshots/diff?a=&b=&key=: what changed between two versions (rows matched on key).

    Without `a`, this is the snapshot named "diff" (the route would otherwise hide it).
    """

    @tornado.web.authenticated
    async def get(self) -> None:  # type: ignore[override]
        a = self.get_query_argument("a", None)
        if a is None:
            await self.show("diff")
            return

        async def body() -> None:
            from workbench.snapshots.differ import diff

            b = self.get_query_argument("b", None)
            if not b:
                raise ValidationError("Pass both a= and b= snapshot refs.", "e.g. ?a=wine@1&b=wine@2")
            keys = [k.strip() for arg in self.get_query_arguments("key") for k in arg.split(",") if k.strip()]
            result = await self.call(diff, a, b, key=keys or None)
            self.reply(result.to_dict())

        await self.guard(body())


# --------------------------------------------------------------------------------------------
# Runs


def _check_run_id(run_id: str) -> str:
    from workbench.runs.ids import check_run_id

    return check_run_id(run_id)


class RunsHandler(WorkbenchHandler):
    """GET runs (filtered table) and POST runs (start a notebook in the background)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        async def body() -> None:
            from workbench.runs.query import runs

            experiments = [e for arg in self.get_query_arguments("experiment") for e in arg.split(",") if e]
            order = [o for o in self.get_query_arguments("order_by") if o.strip()]
            limit_text = self.get_query_argument("limit", None)
            try:
                limit = int(limit_text) if limit_text not in (None, "") else DEFAULT_RUNS_LIMIT
            except ValueError as exc:
                raise ValidationError(f"limit must be an integer, not {limit_text!r}.") from exc
            frame = await self.call(
                runs,
                experiment=(experiments[0] if len(experiments) == 1 else experiments) if experiments else None,
                filter=self.get_query_argument("filter", None) or None,
                order_by=(order[0] if len(order) == 1 else order) if order else None,
                limit=limit,
                status=self.get_query_argument("status", None) or None,
            )
            self.reply(frame_records(frame))

        await self.guard(body())

    @tornado.web.authenticated
    async def post(self) -> None:
        async def body() -> None:
            from workbench.runs.launch import run

            data = self.json_body()
            notebook = self.resolve_notebook(data.get("notebook"))
            params = data.get("params") or {}
            if not isinstance(params, dict):
                raise ValidationError("params must be a JSON object of name: value.")
            experiment = data.get("experiment") or None
            record = await self.call(
                run, str(notebook), params, experiment=experiment, background=True, params_from_text=True
            )
            self.reply(record.to_dict(), 201)

        await self.guard(body())


class RunHandler(WorkbenchHandler):
    """GET runs/<id>: everything one run recorded."""

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        async def body() -> None:
            from workbench.runs.store import get_run

            record = await self.call(get_run, _check_run_id(run_id))
            self.reply(record.to_dict())

        await self.guard(body())


class RunNotebookHandler(WorkbenchHandler):
    """GET runs/<id>/notebook: the executed notebook (nbformat JSON) for the read-only viewer."""

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        async def body() -> None:
            from workbench.runs.store import executed_notebook_path

            def read(ws: Workspace) -> Any:
                path = executed_notebook_path(_check_run_id(run_id), ws)
                if not path.is_file():
                    raise NotFoundError(f"The executed notebook of run {run_id} is missing from the store.",
                                        "Run 'workbench doctor' to check the workspace.")  # fmt: skip
                return json.loads(path.read_text(encoding="utf-8"))

            self.reply(await self.call(read))

        await self.guard(body())


class RunMetricHandler(WorkbenchHandler):
    """GET runs/<id>/metrics/<key>: every logged point of one metric ([{step, value}])."""

    @tornado.web.authenticated
    async def get(self, run_id: str, key: str) -> None:
        async def body() -> None:
            from workbench.runs.store import metric_history

            frame = await self.call(metric_history, _check_run_id(run_id), key)
            self.reply(frame_records(frame[["step", "value"]]))

        await self.guard(body())


class RunCancelHandler(WorkbenchHandler):
    """POST runs/<id>/cancel: ask a queued or running run to stop."""

    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        async def body() -> None:
            from workbench.runs.launch import cancel_run

            cancelled = await self.call(cancel_run, _check_run_id(run_id))
            self.reply({"run_id": run_id, "cancelled": bool(cancelled)})

        await self.guard(body())


class SweepsHandler(WorkbenchHandler):
    """POST sweeps: start a grid sweep; returns at once, the runs appear queued in the runs list.

    Cheap checks (notebook, parameter names and value types, grid shape) run before replying,
    so mistakes come back as a 400 instead of vanishing into the server log.
    """

    #: Sweeps running in this server process (kept so their threads are not orphaned silently).
    active: set[threading.Thread] = set()

    @tornado.web.authenticated
    async def post(self) -> None:
        async def body() -> None:
            from workbench.runs.params import read_notebook, validate_params
            from workbench.sweeps import sweep

            data = self.json_body()
            notebook = self.resolve_notebook(data.get("notebook"))
            grid = data.get("grid")
            if not isinstance(grid, dict) or not grid:
                raise ValidationError("grid must be a non-empty object of name: [values].", 'e.g. {"lr": [0.01, 0.1]}')
            for name, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ValidationError(f"grid[{name!r}] must be a non-empty list of values.")
            params = data.get("params") or {}
            if not isinstance(params, dict):
                raise ValidationError("params must be a JSON object of name: value.")
            parallel = data.get("parallel")
            if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
                raise ValidationError(f"parallel must be a positive integer, not {parallel!r}.")
            experiment = data.get("experiment") or None

            def check() -> int:
                nb = read_notebook(notebook)
                validate_params(nb, params, from_text=True, label=notebook.name)
                for name, values in grid.items():
                    for value in values:
                        validate_params(nb, {name: value}, from_text=True, label=notebook.name)
                return math.prod(len(v) for v in grid.values())

            total = await asyncio.to_thread(check)
            ws = await asyncio.to_thread(self.holder.get)
            log = self.log

            def work() -> None:
                try:
                    sweep(str(notebook), grid, params=params, parallel=parallel, experiment=experiment,
                          params_from_text=True, ws=ws)  # fmt: skip
                except WorkbenchError as exc:
                    log.warning("Workbench sweep of %s failed: %s", notebook, exc)
                except Exception:  # a bug: keep the traceback in the server log
                    log.exception("Workbench sweep of %s crashed", notebook)
                finally:
                    SweepsHandler.active.discard(threading.current_thread())

            thread = threading.Thread(target=work, name=f"workbench-sweep-{notebook.stem}", daemon=True)
            SweepsHandler.active.add(thread)
            thread.start()
            self.reply({"sweep": "started", "runs": total, "notebook": str(notebook.relative_to(
                self.server_root.resolve()))}, 202)  # fmt: skip

        await self.guard(body())


class ExperimentsHandler(WorkbenchHandler):
    """GET experiments: every experiment with its run counts and last activity."""

    @tornado.web.authenticated
    async def get(self) -> None:
        async def body() -> None:
            def query(ws: Workspace) -> list[dict[str, Any]]:
                from workbench.catalog import connect
                from workbench.runs.store import refresh

                refresh(ws)
                with connect(ws) as con:
                    cursor = con.execute(
                        "SELECT coalesce(e.name, r.experiment) AS name, count(r.run_id) AS runs, "
                        "count(r.run_id) FILTER (WHERE r.status = 'finished') AS finished, "
                        "count(r.run_id) FILTER (WHERE r.status IN ('queued', 'running')) AS active, "
                        "count(r.run_id) FILTER (WHERE r.status IN ('failed', 'killed')) AS failed, "
                        "max(r.created_at) AS last_run_at "
                        "FROM experiments e FULL OUTER JOIN runs r ON r.experiment = e.name "
                        "GROUP BY 1 ORDER BY 1"
                    )
                    names = [d[0] for d in cursor.description]
                    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

            self.reply(await self.call(query))

        await self.guard(body())


class NotebookParametersHandler(WorkbenchHandler):
    """GET notebooks/parameters?path=: the parameters cell (name -> default, type, help)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        async def body() -> None:
            from workbench.runs.params import notebook_parameters

            path = self.resolve_notebook(self.get_query_argument("path", None))
            parameters = await asyncio.to_thread(notebook_parameters, path)
            self.reply({"path": str(path.relative_to(self.server_root.resolve())), "parameters": parameters})

        await self.guard(body())


# --------------------------------------------------------------------------------------------
# Compare


class CompareHandler(WorkbenchHandler):
    """GET compare?run_ids=a,b&metric=m: the runs' experiment and status, the comparison table and
    plotly figures (JSON): everything the Compare view shows, from one request."""

    @tornado.web.authenticated
    async def get(self) -> None:
        async def body() -> None:
            ids = [i.strip() for arg in self.get_query_arguments("run_ids") for i in arg.split(",") if i.strip()]
            if not ids:
                raise ValidationError("Pass run_ids=a,b,... to compare.")
            for run_id in ids:
                _check_run_id(run_id)
            metric = self.get_query_argument("metric", None) or None
            compare = _optional_import("workbench.compare", "compare")

            def build(ws: Workspace) -> dict[str, Any]:
                result = _call_with_ws(compare, ids, metric, ws=ws)
                figures = {name: json.loads(fig.to_json()) for name, fig in (result.figures or {}).items()}
                table = getattr(result, "table", None)
                frame = getattr(result, "runs", None)
                about = [c for c in ("run_id", "experiment", "status") if frame is not None and c in frame.columns]
                return {
                    "run_ids": ids,
                    "metric": getattr(result, "metric", metric),
                    "runs": frame_records(frame[about]) if about else [],
                    # rows: key (params.x / metrics.y / tags.z), one column per run, differs
                    "table": frame_records(table.reset_index()) if table is not None else [],
                    "figures": figures,
                }

            self.reply(await self.call(build))

        await self.guard(body())


# --------------------------------------------------------------------------------------------
# Models and serving


class ModelsHandler(WorkbenchHandler):
    """GET models: every registered model with its latest version and aliases."""

    @tornado.web.authenticated
    async def get(self) -> None:
        async def body() -> None:
            list_models = _optional_import("workbench.models.registry", "list_models")
            self.reply(await self.call(list_models))

        await self.guard(body())


class ModelHandler(WorkbenchHandler):
    """GET models/<name>: the versions and aliases of one model."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        async def body() -> None:
            get_model = _optional_import("workbench.models.registry", "get_model")
            self.reply(await self.call(get_model, name))

        await self.guard(body())


class PromoteHandler(WorkbenchHandler):
    """POST models/promote {run_id, model, alias, reason}: register a run's model and move an alias."""

    @tornado.web.authenticated
    async def post(self) -> None:
        async def body() -> None:
            promote = _optional_import("workbench.models.registry", "promote")
            data = self.json_body()
            run_id = _check_run_id(data.get("run_id"))
            alias = data.get("alias") or "production"
            result = await self.call(
                promote, run_id, model=data.get("model") or None, alias=alias, reason=data.get("reason") or None
            )
            self.reply({**to_jsonable(result), "alias": alias})

        await self.guard(body())


class RollbackHandler(WorkbenchHandler):
    """POST models/<name>/rollback {alias, to, reason}: point an alias back at an earlier version."""

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        async def body() -> None:
            rollback = _optional_import("workbench.models.registry", "rollback")
            data = self.json_body()
            alias = data.get("alias") or "production"
            to = data.get("to")
            if to is not None and (isinstance(to, bool) or not isinstance(to, int)):
                raise ValidationError(f"to must be a version number, not {to!r}.")
            result = await self.call(rollback, name, alias=alias, to=to, reason=data.get("reason") or None)
            self.reply({**to_jsonable(result), "alias": alias})

        await self.guard(body())


class ServingHandler(WorkbenchHandler):
    """GET serving: model servers running on this machine ([] when serving is not installed)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        async def body() -> None:
            for module in ("workbench.serving.status", "workbench.serving.server"):
                try:
                    running_servers = _optional_import(module, "running_servers")
                except ModelRegistryMissing:
                    continue
                self.reply(await self.call(running_servers))
                return
            self.reply([])

        await self.guard(body())


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
    (r"sweeps", SweepsHandler),
    (r"experiments", ExperimentsHandler),
    (r"notebooks/parameters", NotebookParametersHandler),
    (r"compare", CompareHandler),
    (r"models", ModelsHandler),
    (r"models/promote", PromoteHandler),
    (r"models/(?P<name>[^/]+)", ModelHandler),
    (r"models/(?P<name>[^/]+)/rollback", RollbackHandler),
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

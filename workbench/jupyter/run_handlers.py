"""REST handlers for runs: list, show, start, cancel, sweeps, experiments, notebook parameters, compare."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import tornado.web

from workbench.errors import ValidationError
from workbench.jupyter.base import (
    WorkbenchHandler,
    frame_records,
    guarded,
    start_work,
    text_field,
    through_server,
)
from workbench.jupyter.forms import check_run_form, check_sweep_form, run_form
from workbench.runs.ids import check_run_id
from workbench.workspace import Workspace

# --------------------------------------------------------------------------------------------
# Runs


class RunsHandler(WorkbenchHandler):
    """GET runs (filtered table) and POST runs (start a notebook in the background).

    GET answers a list of row objects, or with `format=columns` the table column by column (see
    `workbench.httpapi.runs_answer_json`; the team server's `GET /api/v1/runs` answers the same).
    """

    @tornado.web.authenticated
    @guarded
    async def get(self) -> None:
        from workbench.httpapi import runs_answer_json, runs_request

        arguments, shape = runs_request(
            self.get_query_arguments("experiment"), self.get_query_argument("filter", None),
            self.get_query_arguments("order_by"), self.get_query_argument("limit", None),
            self.get_query_argument("status", None), self.get_query_argument("format", None),
        )  # fmt: skip

        @through_server(runs_answer_json)
        def answer(ws: Workspace | None) -> bytes:
            # JSON bytes from the worker thread: a 30,000-run table is ~60 MB, too long to write in the event loop
            return runs_answer_json(arguments, shape, ws).encode()

        body = await self.call(answer)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    def compute_etag(self) -> None:
        """No ETag: tornado would hash every byte of the reply (50 ms for a wide table) on the event
        loop, and JupyterLab's requests bypass the HTTP cache (`cache: 'no-store'`) anyway."""
        return None

    @tornado.web.authenticated
    @guarded
    async def post(self) -> None:
        """Start a run: 201 with the queued run. With a team server, 202 `{notebook, experiment, server}`:
        such a run executes in the foreground of its process (`runs.launch.run`), here a thread of the
        lab's, and shows in the runs list once the server has its first events."""
        from workbench.runs.launch import run

        data = self.json_body()
        notebook = self.resolve_notebook(data.get("notebook"))
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise ValidationError("params must be a JSON object of name: value.")
        experiment = text_field(data, "experiment")
        kernel = text_field(data, "kernel")  # default: the notebook's own kernelspec
        await asyncio.to_thread(check_run_form, notebook, params, experiment, kernel)  # errors name their field
        place = await self.launch_place()
        options = {"experiment": experiment, "params_from_text": True, "kernel": kernel}
        if place.remote is None:
            record = await asyncio.to_thread(run, str(notebook), params, background=True, ws=place.ws, **options)
            self.reply(record.to_dict(), 201)
            return
        start_work(f"run-{notebook.stem}", self.log, run, str(notebook), params, **options)
        self.reply({"notebook": self.relative(notebook), "experiment": experiment, "server": place.remote.url}, 202)


class RunHandler(WorkbenchHandler):
    """GET runs/<id>: everything one run recorded."""

    @tornado.web.authenticated
    @guarded
    async def get(self, run_id: str) -> None:
        from workbench.runs.store import get_run

        record = await self.call(get_run, check_run_id(run_id))
        self.reply(record.to_dict())


class RunNotebookHandler(WorkbenchHandler):
    """GET runs/<id>/notebook: the executed notebook (nbformat JSON) for the read-only viewer.

    Read through nbformat, as Jupyter's contents API does, so multi-line text (sources, stream
    output, `text/plain`) arrives as one string rather than the file's list of lines.
    """

    @tornado.web.authenticated
    @guarded
    async def get(self, run_id: str) -> None:
        import nbformat

        from workbench.runs.store import read_executed_notebook

        @through_server(read_executed_notebook)
        def read(ws: Workspace | None) -> Any:
            return nbformat.reads(read_executed_notebook(check_run_id(run_id), ws).decode("utf-8"), as_version=4)

        self.reply(await self.call(read))


class RunMetricHandler(WorkbenchHandler):
    """GET runs/<id>/metrics/<key>: every logged point of one metric ([{step, value}])."""

    @tornado.web.authenticated
    @guarded
    async def get(self, run_id: str, key: str) -> None:
        from workbench.runs.store import metric_history

        frame = await self.call(metric_history, check_run_id(run_id), key)
        self.reply(frame_records(frame[["step", "value"]]))


class RunRerunHandler(WorkbenchHandler):
    """POST runs/<id>/rerun: the same notebook content, parameters and snapshot versions again, in
    the background; answers the new (queued) run plus `warnings`: how it cannot be exactly the
    original (the notebook file, code commit or packages changed since)."""

    @tornado.web.authenticated
    @guarded
    async def post(self, run_id: str) -> None:
        import warnings

        from workbench.runs.launch import ReproducibilityWarning, rerun

        run_id = check_run_id(run_id)

        @through_server()  # `rerun` decides where itself (`run_place`): with `ws` None, on the team server
        def start(ws: Workspace | None) -> dict[str, Any]:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ReproducibilityWarning)
                record = rerun(run_id, background=True, ws=ws)
            said = [str(w.message) for w in caught if issubclass(w.category, ReproducibilityWarning)]
            return {**record.to_dict(), "warnings": said}

        self.reply(await self.call(start), 201)


class RunCancelHandler(WorkbenchHandler):
    """POST runs/<id>/cancel: ask a queued or running run to stop."""

    @tornado.web.authenticated
    @guarded
    async def post(self, run_id: str) -> None:
        from workbench.runs.launch import cancel_run

        cancelled = await self.call(cancel_run, check_run_id(run_id))
        self.reply({"run_id": run_id, "cancelled": bool(cancelled)})


class SweepsHandler(WorkbenchHandler):
    """POST sweeps: start a grid sweep; returns at once, the runs appear queued in the runs list.

    Cheap checks (notebook, the sweep's size and parallelism against the library's caps,
    parameter names and value types, grid shape; with a team server, whether this user may log runs)
    run before replying, so mistakes come back as a 4xx instead of vanishing into the server log, and
    a refused sweep queues nothing.
    """

    @tornado.web.authenticated
    @guarded
    async def post(self) -> None:
        from workbench.sweeps import sweep

        data = self.json_body()
        notebook = self.resolve_notebook(data.get("notebook"))
        grid = data.get("grid")
        if not isinstance(grid, dict) or not grid:
            raise ValidationError("grid must be a non-empty object of name: [values].", 'e.g. {"lr": [0.01, 0.1]}')
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise ValidationError("params must be a JSON object of name: value.")
        parallel = data.get("parallel")
        experiment = text_field(data, "experiment")
        kernel = text_field(data, "kernel")
        place = await self.launch_place()  # its settings cap the sweep (the server's spool: the client's)
        total = await asyncio.to_thread(check_sweep_form, notebook, grid, params, experiment, parallel, place.ws,
                                        kernel)  # fmt: skip
        start_work(f"sweep-{notebook.stem}", self.log, sweep, str(notebook), grid, params=params, parallel=parallel,
                   experiment=experiment, params_from_text=True, kernel=kernel,
                   ws=place.ws if place.remote is None else None)  # fmt: skip
        self.reply({"sweep": "started", "runs": total, "notebook": self.relative(notebook)}, 202)


class ExperimentsHandler(WorkbenchHandler):
    """GET experiments: every experiment with its run counts and last activity."""

    @tornado.web.authenticated
    @guarded
    async def get(self) -> None:
        from workbench.runs.query import experiments_summary

        self.reply(await self.call(experiments_summary))


class NotebookParametersHandler(WorkbenchHandler):
    """GET notebooks/parameters?path=: the parameters cell (name -> default, type, help) and the
    experiment the Run dialog proposes (`default_experiment`: the notebook's own, else from its name)."""

    @tornado.web.authenticated
    @guarded
    async def get(self) -> None:
        path = self.resolve_notebook(self.get_query_argument("path", None))
        form = await asyncio.to_thread(run_form, path)
        self.reply({"path": self.relative(path), **form})


# --------------------------------------------------------------------------------------------
# Compare


class CompareHandler(WorkbenchHandler):
    """GET compare?run_ids=a,b&metric=m: the runs' experiment and status, their labels (the params
    that differ, `lr=0.1`), the comparison table and plotly figures (JSON): everything the Compare
    view shows, from one request. `metric` in the answer is the one the figures are for (without
    `metric` in the request: the library's default, a metric with a step history if any)."""

    @tornado.web.authenticated
    @guarded
    async def get(self) -> None:
        ids = [i.strip() for arg in self.get_query_arguments("run_ids") for i in arg.split(",") if i.strip()]
        if not ids:
            raise ValidationError("Pass run_ids=a,b,... to compare.")
        for run_id in ids:
            check_run_id(run_id)
        metric = self.get_query_argument("metric", None) or None
        from workbench.compare import compare

        @through_server()  # `compare` passes `ws` on to remote-capable reads only (runs_by_id, metric_history, ...)
        def build(ws: Workspace | None) -> dict[str, Any]:
            result = compare(ids, metric, ws=ws)
            about = [c for c in ("run_id", "experiment", "status") if c in result.runs.columns]
            return {
                "run_ids": result.run_ids,
                "metric": result.metric,
                "runs": frame_records(result.runs[about]),
                "labels": result.labels,  # run id -> label, e.g. "lr=0.1, depth=3"
                # rows: key (params.x / metrics.y / tags.z), one column per run, differs
                "table": frame_records(result.table.reset_index()),
                "figures": {name: json.loads(fig.to_json()) for name, fig in result.figures.items()},
            }

        self.reply(await self.call(build))

"""Runs: the query (filter language, order, limit; as `wb.runs()` and the Jupyter runs table) and one run."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from workbench.httpapi import runs_answer, runs_request
from workbench.runs.ids import check_run_id
from workbench.server.auth import requires, workspace
from workbench.server.responses import reply
from workbench.server.roles import VIEWER
from workbench.server.schemas import REFUSALS
from workbench.workspace import Workspace

router = APIRouter(tags=["runs"], responses=REFUSALS)


@router.get("/runs", dependencies=[Depends(requires(VIEWER, "reading runs"))])
def list_runs(
    experiment: list[str] = Query([], description="Only these experiments (repeat, or a,b)."),
    filter: str | None = Query(None, description="e.g. metrics.accuracy > 0.9 and params.lr < 0.1"),
    order_by: list[str] = Query([], description="e.g. metrics.accuracy DESC (repeat for more keys)."),
    limit: str | None = Query(None, description="At most this many rows (default 500, at most 100,000)."),
    status: str | None = Query(None, description="Only runs with this status, e.g. finished."),
    format: str | None = Query(None, description="records (default: a list of rows) or columns."),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """Runs matching the filter: one object per run (params.*, metrics.*, tags.*), or column by column
    with `format=columns`. The same parameters and error messages as the JupyterLab runs table."""
    arguments, shape = runs_request(experiment, filter, order_by, limit, status, format)
    return reply(runs_answer(arguments, shape, ws), json_safe=shape == "columns")


@router.get("/runs/{run_id}", dependencies=[Depends(requires(VIEWER, "reading runs"))])
def get_run(run_id: str, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """Everything one run recorded: params, metrics, tags, artifacts, inputs, environment."""
    from workbench.runs.store import get_run

    return reply(get_run(check_run_id(run_id), ws).to_dict())

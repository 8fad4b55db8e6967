"""Sweeps, and what a client needs to rerun a run.

A client's sweep executes on the client (or on its Dask workers), so the server learns of the sweep
from the client: `PUT /sweeps/{id}` before its first run starts and again when it ends, idempotent
(the same request twice changes nothing, so a client may retry it). Its runs arrive like any run,
with `sweep_id` set; `GET /sweeps/{id}` lists them with their params, which is how `workbench sweep
--resume` on a client finds the parameter sets still to run.

`GET /runs/{run_id}/given-params`: the parameters a run was given (not its notebook's defaults), which a
rerun injects (`workbench rerun` on a client; the run's notebook content is a blob, `GET /blobs/{id}`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from workbench.catalog.connection import retry_conflicts
from workbench.runs.ids import check_run_id
from workbench.server.auth import Refused, requires, workspace
from workbench.server.responses import reply
from workbench.server.roles import EDITOR, MAINTAINER, VIEWER, allows
from workbench.server.schemas import REFUSALS, SweepRecord
from workbench.server.users import User
from workbench.workspace import Workspace

router = APIRouter(tags=["sweeps"], responses=REFUSALS)
_reading = Depends(requires(VIEWER, "reading sweeps"))


@router.get("/sweeps", dependencies=[_reading])
def list_sweeps(
    limit: int = Query(500, ge=1, le=100_000, description="At most this many sweeps, newest first."),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """Sweeps, newest first: experiment, notebook, creator, status, executor, number of runs (`total`) and
    how many of the runs the server has ended how (`counts`, e.g. {"finished": 3, "failed": 1})."""
    from workbench.sweeps import list_sweeps

    return reply(list_sweeps(ws, limit))


@router.get("/sweeps/{sweep_id}", dependencies=[_reading])
def get_sweep(sweep_id: str, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """One sweep as listed, plus its spec, parameter sets, notebook blob and runs (id, status, params, and
    the run each replaced), oldest first."""
    from workbench.sweeps import sweep_info

    return reply(sweep_info(sweep_id, ws))


@router.put("/sweeps/{sweep_id}")
def put_sweep(
    sweep_id: str,
    body: SweepRecord,
    user: User = Depends(requires(EDITOR, "recording sweeps")),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """Create the sweep (its creator: the token's user) or update its status; the same request again
    changes nothing. Only its creator or a maintainer may update it, and only its status (another
    experiment, notebook or parameter sets under the same id is refused). Audited."""
    from workbench.sweeps import NotYourSweepError, save_sweep

    try:
        saved = retry_conflicts(lambda: save_sweep(
            ws, sweep_id, body.experiment, body.notebook, body.spec, body.param_sets, body.status,
            body.notebook_blob, may_edit_others=allows(user.role, MAINTAINER)))  # fmt: skip
    except NotYourSweepError as exc:
        raise Refused(403, exc.message, exc.hint) from exc
    return reply(saved)


@router.get("/runs/{run_id}/given-params", tags=["runs"],
            dependencies=[Depends(requires(VIEWER, "reading runs"))])  # fmt: skip
def given_params(run_id: str, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """`{"params": ...}`: the parameters the run was given, with the values it was given (null for a run
    recorded before Workbench kept that apart; its `params` are then all it was given)."""
    from workbench.runs.lifecycle import given_params
    from workbench.runs.store import get_run

    get_run(check_run_id(run_id), ws)  # 404 for a run the server does not have
    return reply({"params": given_params(ws, run_id)})

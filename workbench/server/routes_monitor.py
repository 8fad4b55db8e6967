"""Monitoring served models: the drift report of `workbench monitor NAME`, computed here.

Model servers on other machines ship their prediction logs to this server (`routes_models`
`upload_predictions`), so the report a client asks for (`wb.drift_report`, `workbench monitor` with a
server configured: `remote.store_monitor`) is computed here, over every model server's requests,
against the training snapshot and the model this workspace holds.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from workbench.names import validate_name
from workbench.server.auth import requires, workspace
from workbench.server.responses import reply
from workbench.server.roles import VIEWER
from workbench.server.schemas import REFUSALS
from workbench.workspace import Workspace

router = APIRouter(tags=["models"], responses=REFUSALS)


@router.get("/models/{name}/monitor", dependencies=[Depends(requires(VIEWER, "reading drift reports"))])
def monitor(
    name: str,
    version: str | None = Query(None, description="A version (only its requests) or an alias (its version)."),
    since: str | None = Query(None, description="Only predictions at or after this ISO time."),
    threshold: float = Query(0.2, ge=0, description="PSI above which a column counts as drifted."),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """The drift of NAME's logged inputs and predictions vs its training snapshot, as `workbench monitor
    NAME[@VERSION] --json` prints it: per column (and `prediction`) kind, PSI, KS statistic and p-value."""
    from workbench.serving.monitor import drift_report

    ref = validate_name(name, "model name") + (f"@{version}" if version else "")
    return reply(drift_report(ref, since=since or None, threshold=threshold, ws=ws).to_dict())

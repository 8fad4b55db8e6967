"""Monitoring served models: the drift report and live quality of `workbench monitor NAME`, computed here.

Model servers on other machines ship their prediction logs to this server (`routes_models`
`upload_predictions`), and their failure logs and the outcomes callers reported to them (`POST
.../logs/{kind}`, the same exactly-once batches), so the reports a client asks for (`wb.drift_report`,
`live_quality`, `workbench monitor` with a server configured: `remote.store_monitor`) are computed
here, over every model server's requests, against the training snapshot and the model this workspace
holds. Bulk late outcomes (`wb.log_outcomes`) arrive checked and batched (`POST .../outcomes`).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from workbench.names import validate_name
from workbench.server.auth import requires, workspace
from workbench.server.responses import reply
from workbench.server.roles import EDITOR, VIEWER
from workbench.server.schemas import REFUSALS, EventsOffset, PredictionChunk, Strict
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


@router.get("/models/{name}/live", dependencies=[Depends(requires(VIEWER, "reading live quality"))])
def live(
    name: str,
    window: str = Query("1h", max_length=32, description="Window length: 15m, 1h, 1d."),
    since: str = Query("7d", max_length=64, description="A span back from now (7d) or an ISO time; empty: all."),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """NAME's live quality per version and window, `LiveQuality.to_dict()` (`workbench monitor NAME
    --window 1h --since 7d --json` prints it as "live"): traffic, errors, latency, task metrics, PSI."""
    from workbench.quality.live import live_quality

    return reply(live_quality(validate_name(name, "model name"), window, since or None, ws=ws).to_dict())


@router.get("/models/{name}/ab", dependencies=[Depends(requires(VIEWER, "reading A/B reports"))])
def ab(
    name: str,
    since: str = Query("", max_length=64, description="Only predictions at or after this ISO time; empty: all."),
    ws: Workspace = Depends(workspace),
) -> JSONResponse:
    """{"ab": every version of NAME against the baseline (`ab_report(...).to_dict()`), or null until two
    versions have outcomes} (the lab's Monitor view)."""
    from workbench.quality.live import ab_summary

    return reply({"ab": ab_summary(validate_name(name, "model name"), since or None, ws=ws)})


@router.get("/models/{name}/outcomes", dependencies=[Depends(requires(VIEWER, "reading outcome counts"))])
def outcome_counts(name: str, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """The join of NAME's outcomes with its prediction logs, counted: outcomes, matched, duplicates,
    unknown, pending (`workbench monitor outcomes NAME`)."""
    from workbench.quality.outcomes import outcome_counts as counts

    return reply(counts(validate_name(name, "model name"), ws=ws))


class OutcomeBatch(Strict):
    """POST /models/{name}/outcomes: part of a table of late outcomes (`wb.log_outcomes`)."""

    items: list[Any] = Field(description='[{"request_id", "row" (default 0), "outcome"}, ...], at most 10,000.')
    source: str = Field(default="a table", min_length=1, max_length=300, description="What the table is (audited).")


@router.post("/models/{name}/outcomes", dependencies=[Depends(requires(EDITOR, "recording outcomes"))])
def record_outcomes(name: str, batch: OutcomeBatch, ws: Workspace = Depends(workspace)) -> JSONResponse:
    """Record outcomes of NAME's served predictions (checked like `wb.log_outcomes` checks them: all of
    the batch or none), audited as `outcomes.recorded` with the counts: recorded, duplicates, unknown."""
    from workbench.models.registry import versions
    from workbench.quality.outcomes import check_items, record_checked

    model = validate_name(name, "model name")
    versions(model, ws)  # a registered model, or 404
    return reply(record_checked(ws, model, check_items(batch.items), batch.source))


@router.post("/models/{name}/logs/{kind}", response_model=EventsOffset,
             dependencies=[Depends(requires(EDITOR, "uploading prediction logs"))])  # fmt: skip
def upload_log(name: str, kind: Literal["predictions", "failures", "outcomes"], chunk: PredictionChunk,
               ws: Workspace = Depends(workspace)) -> JSONResponse:  # fmt: skip
    """Append a batch of a model server's log of `kind`: its predictions (as `POST .../predictions`),
    the requests it failed, or the outcomes it received on /feedback; exactly once per (`stream`,
    `offset`), a gap is 409 with `size` (`serving.predlog.receive`)."""
    from workbench.httpapi import error_body
    from workbench.serving.predlog import PredictionOffsetConflict, receive

    try:
        size = receive(ws, validate_name(name, "model name"), chunk.stream, chunk.offset, chunk.lines, kind)
    except PredictionOffsetConflict as exc:
        return JSONResponse({**error_body(exc), "size": exc.size}, status_code=409)
    return reply({"size": size})

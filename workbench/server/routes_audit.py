"""The audit log: who changed what, when and why, with the filters of `workbench audit`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from workbench.httpapi import MAX_INT, int_text
from workbench.server.auth import requires, workspace
from workbench.server.roles import VIEWER
from workbench.server.schemas import REFUSALS, AuditEntryOut
from workbench.workspace import Workspace

router = APIRouter(tags=["audit"], responses=REFUSALS)


@router.get("/audit", response_model=list[AuditEntryOut],
            dependencies=[Depends(requires(VIEWER, "reading the audit log"))])  # fmt: skip
def audit_log(
    model: str | None = Query(None, description="Only entries about this model."),
    target: str | None = Query(None, description="Only this target (e.g. wine@2, model:wine@production, user:ann)."),
    action: str | None = Query(None, description="Only this action (e.g. alias.moved)."),
    since: str | None = Query(None, description="Only entries at or after this ISO date or time."),
    limit: str | None = Query(None, description="Only the most recent N entries."),
    first: str | None = Query(None, description="Only the oldest N entries (instead of `limit`)."),
    ws: Workspace = Depends(workspace),
) -> list[dict]:
    """Audit entries, oldest first; every entry written through this server names its user as `actor`."""
    from workbench.audit import entries, search, search_filters
    from workbench.errors import ValidationError

    count = int_text("limit", limit, 0, 1, MAX_INT) if limit and limit.strip() else None
    if first is None or not first.strip():
        return [e.to_dict() for e in search(model or None, target or None, action or None, since or None, count, ws)]
    if count is not None:
        raise ValidationError("Give limit or first, not both.")
    where, moment = search_filters(model or None, target or None, since or None, None)
    found = entries(where, action or None, moment, int_text("first", first, 0, 0, MAX_INT), ws)
    return [e.to_dict() for e in found]

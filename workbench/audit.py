"""The audit log: who changed what, when and why.

`record()` is called inside the same catalog transaction as the change it describes, so an
entry exists exactly when the change does. The log is append-only through this API: nothing in
Workbench updates or deletes audit rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import duckdb

from workbench.catalog import connect
from workbench.identity import current_user
from workbench.remote.dispatch import remote_capable
from workbench.workspace import Workspace, current_workspace


@dataclass
class AuditEntry:
    id: int
    occurred_at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "occurred_at": self.occurred_at.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEntry:
        """The entry `to_dict` (e.g. the team server's answer) describes."""
        return cls(int(data["id"]), datetime.fromisoformat(data["occurred_at"]), data["actor"], data["action"],
                   data["target"], data.get("details"), data.get("reason"))  # fmt: skip


def record(
    con: duckdb.DuckDBPyConnection,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    reason: str | None = None,
    actor: str | None = None,
    occurred_at: datetime | None = None,
) -> None:
    """Append one entry using the caller's open transaction.

    `occurred_at` is when the change happened if that was before it reached the catalog (a run's
    start and end are indexed from its event file, possibly later); by default, now.
    """
    con.execute(
        "INSERT INTO audit (occurred_at, actor, action, target, details, reason) VALUES (?, ?, ?, ?, ?, ?)",
        [
            occurred_at or datetime.now(timezone.utc),
            actor or current_user(),
            action,
            target,
            json.dumps(details, default=str) if details is not None else None,
            reason,
        ],
    )


@remote_capable("audit_entries")
def entries(
    target: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    ws: Workspace | None = None,
) -> list[AuditEntry]:
    """Audit entries, oldest first; `target` matches exactly or as a `name@...` prefix."""
    clauses, params = [], []
    if target:
        clauses.append("(target = ? OR starts_with(target, ?))")
        params += [target, target + "@"]
    if action:
        clauses.append("action = ?")
        params.append(action)
    if since:
        clauses.append("occurred_at >= ?")
        params.append(since)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    tail = ""
    if limit is not None:
        tail = "LIMIT ?"
        params.append(int(limit))
    with connect(ws or current_workspace()) as con:
        rows = con.execute(
            f"SELECT id, occurred_at, actor, action, target, details, reason FROM audit {where} ORDER BY id {tail}",
            params,
        ).fetchall()
    return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None, r[6]) for r in rows]


def after(
    after_id: int,
    action: str | None = None,
    target: str | None = None,
    limit: int = 100,
    ws: Workspace | None = None,
) -> tuple[list[AuditEntry], int]:
    """The change feed: entries with an id above `after_id` (optionally of one `action`, about one
    `target` or `name@...` under it), oldest first, at most `limit`; and the id to ask after next time.

    That id is the last entry returned, or, when fewer than `limit` matched, the newest id of the
    whole log at the time of reading, so a filtered reader skips what it does not want only once.
    Ids grow in commit order where writes are serialised (a held catalog, or one process at a time).
    """
    clauses, params = ["id > ?", "id <= ?"], [int(after_id)]
    if target:
        clauses.append("(target = ? OR starts_with(target, ?))")
        params += [target, target + "@"]
    if action:
        clauses.append("action = ?")
        params.append(action)
    with connect(ws or current_workspace()) as con:
        newest = con.execute("SELECT coalesce(max(id), 0) FROM audit").fetchone()[0]
        rows = con.execute(
            "SELECT id, occurred_at, actor, action, target, details, reason FROM audit "
            f"WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
            [params[0], newest, *params[1:], int(limit)],
        ).fetchall()
    found = [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None, r[6]) for r in rows]
    return found, (found[-1].id if len(found) == limit else max(newest, int(after_id)))


def newest_id(ws: Workspace | None = None) -> int:
    """The id of the newest audit entry (0: none yet)."""
    with connect(ws or current_workspace()) as con:
        return con.execute("SELECT coalesce(max(id), 0) FROM audit").fetchone()[0]


def parse_since(text: str | datetime | None, option: str = "since") -> datetime | None:
    """An ISO date or time (naive: UTC) as a datetime; anything else is a ValidationError naming `option`."""
    from workbench.errors import ValidationError

    if text is None or isinstance(text, datetime):
        moment = text
    elif not text:
        return None
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            hint = "Use an ISO date or time, e.g. 2026-01-31 or 2026-01-31T12:00."
            raise ValidationError(f"Invalid {option} {text!r}.", hint) from None
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def search_filters(
    model: str | None, target: str | None, since: str | datetime | None, limit: int | None, flag: str = ""
) -> tuple[str | None, datetime | None]:
    """The filters of `search`, checked: the target to match (`model:NAME` for a model) and `since`
    as a datetime. A ValidationError names the option (prefixed with `flag`) that is wrong."""
    from workbench.errors import ValidationError
    from workbench.names import validate_name

    if model and target:
        raise ValidationError(f"Give {flag}model or {flag}target, not both.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError(f"{flag}limit must be at least 1, got {limit}.")
    where = f"model:{validate_name(model, 'model name')}" if model else target
    return where, parse_since(since, f"{flag}since")


@remote_capable("audit_search")
def search(
    model: str | None = None,
    target: str | None = None,
    action: str | None = None,
    since: str | datetime | None = None,
    limit: int | None = None,
    ws: Workspace | None = None,
    flag: str = "",
) -> list[AuditEntry]:
    """The filters of `workbench audit` and of the team server's `GET /api/v1/audit`, checked
    (`search_filters`): entries about one `model` (or one `target`), of one `action`, at or after
    `since` (ISO text), oldest first; with `limit`, only the newest `limit` of them. `flag` prefixes
    the option names in error messages ("--" for the command line)."""
    where, moment = search_filters(model, target, since, limit, flag)
    found = entries(target=where, action=action, since=moment, ws=ws or current_workspace())
    return found[-limit:] if limit is not None else found  # the newest are what people ask for

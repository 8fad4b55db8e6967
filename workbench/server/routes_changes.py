"""The change feed: the audit log as it grows, for live UIs and for model servers following an alias.

Every change Workbench records is an audit entry with an increasing id (writes on the server are
serialised, so ids grow in commit order). A client remembers the last id it saw and asks for what
came after it:

- `GET /changes?after=ID&timeout=S` (long-poll): the entries after ID at once, or, when there are
  none, waits up to S seconds (at most 60) for one; `last_id` is the `after` of the next request.
  Without `after`, it starts from now.
- `GET /changes/stream` (server-sent events): each entry as an event whose `id:` is its audit id, so
  a reconnecting `EventSource` resumes after the last one it got (`Last-Event-ID`), with a comment
  line every 15 s to keep proxies from closing a quiet stream.

Both filter by `action` (e.g. `alias.moved`) and `target` (e.g. `model:wine@production`, or
`model:wine` for everything about it). Waiting clients hold no worker thread: they await an asyncio
event the catalog's write listener sets after every write this process commits
(`catalog.connection.add_write_listener`), and look again at least every few seconds regardless.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from workbench.errors import ValidationError
from workbench.httpapi import int_text
from workbench.server.auth import requires, workspace
from workbench.server.roles import VIEWER
from workbench.server.schemas import REFUSALS, AuditEntryOut, ChangesOut
from workbench.workspace import Workspace

router = APIRouter(tags=["changes"], responses=REFUSALS)
_reading = Depends(requires(VIEWER, "reading the change feed"))

#: Longest a long-poll waits (a larger `timeout` is capped to it).
MAX_WAIT_S = 60.0
DEFAULT_WAIT_S = 30.0
#: A waiting client looks at the log at least this often, even without a write signal.
RECHECK_S = 5.0
#: A quiet event stream sends a comment this often.
HEARTBEAT_S = 15.0
MAX_ENTRIES = 1000

_AFTER = Query(None, description="The last audit id the client has seen (default: the newest, i.e. from now on).")
_TIMEOUT = Query(None, description=f"Seconds to wait when nothing is new (default {DEFAULT_WAIT_S:g}, at most "
                 f"{MAX_WAIT_S:g}; 0: answer at once).")  # fmt: skip
_ACTION = Query(None, max_length=200, description="Only this action (e.g. alias.moved).")
_TARGET = Query(None, max_length=400, description="Only this target or what is under it (e.g. model:wine@production).")


class WriteSignal:
    """An asyncio event replaced after each catalog write this process commits: a waiter takes the
    current event *before* it reads the log, so a write after that read always wakes it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from workbench.catalog.connection import add_write_listener

        self._loop = loop
        self._event = asyncio.Event()
        add_write_listener(self._from_writer)

    def _from_writer(self) -> None:  # in the writing thread
        self._loop.call_soon_threadsafe(self._fire)  # raises once the loop is closed: the listener is dropped

    def _fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def close(self) -> None:
        """The server is stopping (from any thread, a signal handler too): waiters answer and streams end."""
        self.closed = True
        self._loop.call_soon_threadsafe(self._fire)

    closed = False


def stop_waiting(app: Any) -> None:
    """End the change feed's long-polls and streams of `app` now (the server is shutting down), so a
    graceful shutdown does not wait for them."""
    signal = getattr(app.state, "write_signal", None)
    if signal is not None:
        signal.close()


def _signal(request: Request) -> WriteSignal:
    """The app's write signal, made on first use in its event loop."""
    state = request.app.state
    if getattr(state, "write_signal", None) is None:
        state.write_signal = WriteSignal(asyncio.get_running_loop())
    return state.write_signal


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _start(after: str | None, ws: Workspace) -> int:
    from workbench.audit import newest_id

    if after is not None and after.strip():
        return int_text("after", after, 0, 0, 2**63 - 1)
    return await run_in_threadpool(newest_id, ws)


def _seconds(text: str | None) -> float:
    if text is None or not text.strip():
        return DEFAULT_WAIT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValidationError(f"timeout must be a number of seconds from 0 to {MAX_WAIT_S:g}, not {text[:40]!r}.")
    return min(value, MAX_WAIT_S)


def _read(after: int, action: str | None, target: str | None, limit: int, ws: Workspace) -> tuple[list[dict], int]:
    from workbench.audit import after as entries_after

    found, last = entries_after(after, action or None, target or None, limit, ws)
    return [e.to_dict() for e in found], last


@router.get("/changes", response_model=ChangesOut, dependencies=[_reading])
async def changes(
    request: Request,
    after: str | None = _AFTER,
    timeout: str | None = _TIMEOUT,
    action: str | None = _ACTION,
    target: str | None = _TARGET,
    limit: str | None = Query(None, description=f"Most entries to answer (default and most {MAX_ENTRIES})."),
    ws: Workspace = Depends(workspace),
) -> dict[str, Any]:
    """Audit entries after `after` (oldest first: `id`, `action`, `target`, `actor`, `occurred_at`,
    `details`, `reason`), waiting up to `timeout` seconds for one when there are none yet; then
    `changes` is empty. Ask again with `after` = `last_id`."""
    count = int_text("limit", limit, MAX_ENTRIES, 1, MAX_ENTRIES)
    wait = _seconds(timeout)
    cursor = await _start(after, ws)
    signal = _signal(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        event = signal.current()
        found, cursor = await run_in_threadpool(_read, cursor, action, target, count, ws)
        left = deadline - loop.time()
        if found or left <= 0 or signal.closed:
            return {"changes": found, "last_id": cursor}
        await _wait(event, min(left, RECHECK_S))


def _event(entry: dict[str, Any]) -> str:
    """One server-sent event: the entry as `GET /changes` spells it."""
    return f"id: {entry['id']}\ndata: {AuditEntryOut.model_validate(entry).model_dump_json()}\n\n"


_SSE = {200: {"content": {"text/event-stream": {}},
              "description": "Server-sent events: `id:` the audit id, `data:` the entry as JSON."}}  # fmt: skip


@router.get("/changes/stream", dependencies=[_reading], responses=_SSE)
async def change_stream(
    request: Request,
    after: str | None = _AFTER,
    action: str | None = _ACTION,
    target: str | None = _TARGET,
    last_event_id: str | None = Header(None, description="Sent by a reconnecting EventSource: resume after it."),
    ws: Workspace = Depends(workspace),
) -> StreamingResponse:
    """The change feed as server-sent events (`text/event-stream`): every audit entry after `after`
    (or `Last-Event-ID`), then each new one as it is written, until the client disconnects."""
    cursor = await _start(last_event_id if last_event_id and last_event_id.strip() else after, ws)
    signal = _signal(request)

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        position, said = cursor, loop.time()
        yield "retry: 2000\n\n"
        while True:
            event = signal.current()
            found, position = await run_in_threadpool(_read, position, action, target, MAX_ENTRIES, ws)
            for entry in found:
                yield _event(entry)
                said = loop.time()
            if signal.closed:
                return
            if len(found) < MAX_ENTRIES and not await _wait(event, RECHECK_S) and loop.time() - said >= HEARTBEAT_S:
                yield ": keep-alive\n\n"
                said = loop.time()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

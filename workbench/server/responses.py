"""JSON replies of the team server, and what every error becomes: `{"error", "hint"}`, never a traceback.

- a refusal by the auth dependency: its 401 or 403;
- a `WorkbenchError` from the library (a bad name, a missing object, bad gates): 400, 404 for
  `NotFoundError`, 413 for a body too large, 503 (retry shortly) when the catalog is busy;
- a request that does not fit its schema: 400 naming the field;
- anything else is a bug: 500 with a one-line message, the traceback only in the server's log.

Bodies are limited before anything reads them (`LimitBody`): a request body over
`MAX_BODY_BYTES` is refused with 413 whoever sends it, so no client can make the server buffer
gigabytes, token or not. Blob uploads (`PUT /api/v1/blobs/...`) are the exception: they stream to a
scratch file under the blob size limit, checked while they arrive.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workbench.errors import WorkbenchError
from workbench.httpapi import MAX_BODY_BYTES, error_body, error_status, to_jsonable
from workbench.server.auth import Refused

log = logging.getLogger("workbench.server")


def reply(data: Any, status: int = 200, json_safe: bool = False) -> JSONResponse:
    """`data` (library results: dataclasses, datetimes, NaN...) as strict JSON."""
    return JSONResponse(data if json_safe else to_jsonable(data), status_code=status)


def fail(status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    """FastAPI's list of schema errors as one line: `field: problem; ...`."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "Invalid request: " + "; ".join(parts) + "."


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to a JSON body (see the module doc)."""

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return fail(exc.status, exc.message, exc.hint, exc.headers)

    @app.exception_handler(WorkbenchError)
    async def workbench_error(request: Request, exc: WorkbenchError) -> JSONResponse:
        status = error_status(exc)
        retry = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse(error_body(exc), status_code=status, headers=retry)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return fail(400, _validation_message(exc), "See the API's schema at /api/v1/docs.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return fail(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return fail(500, "Internal error of the Workbench server.", "The server's log has the details.")


#: Requests whose bodies stream to disk under a limit of their own (blob uploads: `runs.receive.store_blob`).
#: Snapshot uploads (`POST /api/v1/snapshots/{ref}`) too: `routes_snapshots.receive_upload`.
STREAMED = (("PUT", "/api/v1/blobs/"), ("POST", "/api/v1/snapshots/"))


def _streamed(scope: Scope) -> bool:
    path = scope.get("path", "")
    return any(scope.get("method") == method and path.startswith(prefix) for method, prefix in STREAMED)


class LimitBody:
    """ASGI middleware: refuse (413) a request body over `limit` bytes before the app reads it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _streamed(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"").decode("latin-1").strip()
        if declared and (not declared.isdigit() or int(declared) > self.limit):
            await self._too_large(send)
            return
        body, more = b"", True
        while more:  # buffered here (at most `limit`), then handed to the app as one message
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._too_large(send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        data = json.dumps({"error": f"The request body is larger than the limit of {self.limit:,} bytes.",
                           "hint": None}).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": data})

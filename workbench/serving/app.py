"""The model server's HTTP API (FastAPI): /predict, /health, /metadata, /metrics (and /docs on request).

Request handling is deliberately lean (raw body, json, one array or DataFrame, one predict call) because
single-row latency is what a model server is judged on. Every client mistake becomes a 4xx JSON
error from `inputs.InputError`; a failure inside the model is a 500 with the exception's message
(and counted), never a dropped connection.

A client must not be able to stall the server: the body is read in chunks and refused with 413 as
soon as it is known to be too large (its Content-Length, or the bytes counted so far), and the
CPU work on a large body (parsing, checking, predicting, logging) runs in a worker thread, two
at a time, so that /health and /metrics keep answering while it is done. Small bodies, the
single-row case, are handled on the event loop: there the thread hop would be a large share of
the request (measured in `INLINE_BODY_BYTES`'s comment) and the work is bounded by the body's
size. One limit remains: `json.loads` is C code that holds the GIL, so parsing one 8 MB body
made of nothing but tiny tokens (`[[],[],...]`) still pauses the other threads for its duration
(0.3-2 s measured); parsing out of process would be the fix.
"""

from __future__ import annotations

import hmac
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from workbench.serving.inputs import MAX_BODY_BYTES, MAX_ROWS, Conformed, InputError, conform, parse_body
from workbench.serving.models import LoadedModel, ModelSlot
from workbench.serving.predlog import PredictionLogger

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Bodies up to this size (for a model with a schema) are handled on the event loop, larger ones in a
#: worker thread. Measured: a thread hop costs 40-70 µs, 5-10% of a single-row request (~0.7-1.1 ms
#: end to end); the slowest 16 KB body found (1,500 rows) takes 2.5 ms inline. Without a schema the
#: work is not bounded by the body's size (16 KB of sparse records: 140 ms), so it always moves.
INLINE_BODY_BYTES = 16 * 1024
#: Large bodies checked at once: each can take ~10x its size in Python objects and a core, and
#: more threads than cores would only make every request slower (the GIL), so others wait their turn.
LARGE_BODIES_AT_ONCE = 2


@dataclass
class Canary:
    """A fixed candidate version that gets `fraction` of the requests."""

    model: LoadedModel
    fraction: float


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("workbench_requests", "Prediction requests", ["version", "status"],
                                registry=self.registry)  # fmt: skip
        self.rows = Counter("workbench_predicted_rows", "Rows predicted", ["version"], registry=self.registry)
        self.errors = Counter("workbench_errors", "Failed requests by kind", ["kind"], registry=self.registry)
        self.latency = Histogram("workbench_request_latency_seconds", "Prediction latency", ["version"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip


class _Predictions:
    """POST /predict: picks the model, reads the body within its limit, answers (off the loop if large)."""

    def __init__(self, slot: ModelSlot, canary: Canary | None, metrics: ServerMetrics,
                 logger: PredictionLogger | None) -> None:  # fmt: skip
        self.slot, self.canary, self.metrics, self.logger = slot, canary, metrics, logger
        self.large: anyio.CapacityLimiter | None = None  # made in the event loop, on first use

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        use_canary = self.canary is not None and random.random() < self.canary.fraction
        model = self.canary.model if self.canary and use_canary else self.slot.current  # one reference per request
        try:
            raw = await read_body(request)
        except InputError as exc:  # the rest of the body is not read: close the connection
            return self.rejected(exc, model, headers={"Connection": "close"})
        content_type = request.headers.get("content-type")
        if len(raw) <= INLINE_BODY_BYTES and model.schema:
            return self.answer(raw, content_type, model, use_canary, started)
        self.large = self.large or anyio.CapacityLimiter(LARGE_BODIES_AT_ONCE)
        return await anyio.to_thread.run_sync(self.answer, raw, content_type, model, use_canary, started,
                                              limiter=self.large)  # fmt: skip

    def rejected(self, exc: InputError, model: LoadedModel, headers: dict[str, str] | None = None) -> JSONResponse:
        version = str(model.version.version)
        self.metrics.requests.labels(version, str(exc.status)).inc()
        self.metrics.errors.labels("input").inc()
        return JSONResponse(exc.body, status_code=exc.status, headers={"X-Model-Version": version, **(headers or {})})

    def answer(self, raw: bytes, content_type: str | None, model: LoadedModel, use_canary: bool,
               started: float) -> Response:  # fmt: skip
        """Parse, check, predict, log and render: everything that costs CPU in proportion to the body."""
        try:
            inputs = conform(parse_body(raw, content_type, model.schema), model.schema)
        except InputError as exc:
            return self.rejected(exc, model)
        except Exception as exc:  # a bug of ours, not the client's: still a counted JSON answer
            return self.failed(model, "server", f"Could not read the input: {type(exc).__name__}")
        try:
            outputs = model.predictor.predict(inputs)
        except Exception as exc:  # the model itself failed on valid-looking input
            return self.failed(model, "model", f"The model failed: {type(exc).__name__}: {exc}")
        return self.predicted(inputs, outputs, model, use_canary, time.perf_counter() - started)

    def failed(self, model: LoadedModel, kind: str, message: str) -> JSONResponse:
        """A 500 that says which version failed (the guard judges each version on its own answers)."""
        version = str(model.version.version)
        self.metrics.requests.labels(version, "500").inc()
        self.metrics.errors.labels(kind).inc()
        return JSONResponse({"error": message}, status_code=500, headers={"X-Model-Version": version})

    def predicted(self, inputs: Conformed, outputs: list[Any], model: LoadedModel, use_canary: bool,
                  elapsed: float) -> JSONResponse:  # fmt: skip
        version = model.version.version
        request_id = uuid.uuid4().hex
        self.metrics.requests.labels(str(version), "200").inc()
        self.metrics.rows.labels(str(version)).inc(len(outputs))
        self.metrics.latency.labels(str(version)).observe(elapsed)
        if self.logger is not None:
            self.logger.log(request_id, version, inputs.records(), outputs, elapsed * 1000)
        body = {"predictions": outputs, "model": model.version.name, "version": version, "request_id": request_id}
        if self.canary is not None:
            body["canary"] = use_canary
        return JSONResponse(body, headers={"X-Model-Version": str(version)})


async def read_body(request: Request) -> bytes:
    """The request body, or a 413 as soon as it is known to exceed MAX_BODY_BYTES: from its
    Content-Length before reading anything, else (chunked) by counting, holding at most the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(f"Payload of {int(declared):,} bytes is")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large("Payload (still being sent) is")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str) -> InputError:
    return InputError(413, f"{what} larger than the limit of {MAX_BODY_BYTES:,} bytes.",
                      hint=f"Send at most {MAX_ROWS:,} rows per request.")  # fmt: skip


def _add_docs(app: FastAPI, authorized: Callable[[Request], bool], refuse: Callable[[], JSONResponse]) -> None:
    """/docs and /openapi.json, behind the token like /metadata (served only when asked for)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        return JSONResponse(app.openapi()) if authorized(request) else refuse()

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        if not authorized(request):
            return refuse()
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - API")


def create_app(
    slot: ModelSlot,
    *,
    canary: Canary | None = None,
    token: str | None = None,
    logger: PredictionLogger | None = None,
    docs: bool = False,
) -> FastAPI:
    """The ASGI app serving `slot` (and optionally a canary), with optional bearer-token auth.
    Everything but /health and /metrics needs the token; /docs and /openapi.json exist only with `docs`."""
    app = FastAPI(title="Workbench model server", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = ServerMetrics()
    app.state.metrics = metrics
    expected = f"Bearer {token}".encode() if token else None
    predictions = _Predictions(slot, canary, metrics, logger)

    def authorized(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    def refuse() -> JSONResponse:
        metrics.errors.labels("unauthorized").inc()
        return JSONResponse({"error": "Missing or wrong bearer token."}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        return await predictions(request) if authorized(request) else refuse()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": slot.current.version.ref}

    @app.get("/metadata")
    async def metadata(request: Request) -> Response:
        if not authorized(request):
            return refuse()
        current = slot.current.version
        body = {
            "model": current.name, "version": current.version, "ref": slot.ref, "aliases": current.aliases,
            "run_id": current.run_id, "schema": current.schema, "flavor": current.meta.get("flavor"),
            "class": current.meta.get("class"), "classes": current.meta.get("classes"), "metrics": current.metrics,
            "training_data": current.inputs, "swaps": slot.swaps,
            "canary": {"version": canary.model.version.version, "fraction": canary.fraction} if canary else None,
        }  # fmt: skip
        return JSONResponse(body)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if docs:
        _add_docs(app, authorized, refuse)
    return app

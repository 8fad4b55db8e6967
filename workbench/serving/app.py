"""The model server's HTTP API (FastAPI): /predict, /feedback, /health, /metadata, /metrics (and /docs on request).

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

Beyond answering: a canary gets a fraction of the requests (the same caller, named by its
`X-Workbench-Key` header, always the same version: a hash, not a coin, decides), a shadow version
predicts a copy of each request off the response path (`models.Shadow`), and POST /feedback
records what really happened for earlier answers (`workbench.quality.outcomes`), written in a
worker thread like a large body's predictions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
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

from workbench.errors import WorkbenchError
from workbench.serving.inputs import MAX_BODY_BYTES, MAX_ROWS, Conformed, InputError, conform, parse_body
from workbench.serving.models import LoadedModel, ModelSlot, Shadow
from workbench.serving.predlog import PredictionLogger
from workbench.serving.prometheus.gauges import MonitorGauges

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Bodies up to this size (for a model with a schema) are handled on the event loop, larger ones in a
#: worker thread. Measured: a thread hop costs 40-70 µs, 5-10% of a single-row request (~0.7-1.1 ms
#: end to end); the slowest 16 KB body found (1,500 rows) takes 2.5 ms inline. Without a schema the
#: work is not bounded by the body's size (16 KB of sparse records: 140 ms), so it always moves.
INLINE_BODY_BYTES = 16 * 1024
#: Large bodies checked at once: each can take ~10x its size in Python objects and a core, and
#: more threads than cores would only make every request slower (the GIL), so others wait their turn.
LARGE_BODIES_AT_ONCE = 2
#: The header naming the caller, for a sticky canary split.
KEY_HEADER = "x-workbench-key"
_ROWS_HINT = f"Send at most {MAX_ROWS:,} rows per request."
_FEEDBACK_HINT = ('Send {"request_id": "...", "row": 0, "outcome": ...} or {"outcomes": [{...}, ...]}, '
                  "with the request_id /predict answered.")  # fmt: skip


@dataclass
class Canary:
    """A fixed candidate version that gets `fraction` of the requests."""

    model: LoadedModel
    fraction: float

    def chosen(self, key: str | None, model_name: str) -> bool:
        """Whether this request goes to the canary: by chance, or, for a caller that names itself,
        by a hash of (key, model) against the fraction, so it gets the same version on every request
        for as long as the fraction stays the same (and keeps it when the fraction grows)."""
        if key is None:
            return random.random() < self.fraction
        return key_share(key, model_name) < self.fraction


def key_share(key: str, model_name: str) -> float:
    """Where `key` falls in [0, 1) for `model_name`: uniform over keys, independent between models."""
    digest = hashlib.blake2b(f"{model_name}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class ServerMetrics:
    """What /metrics exports (besides `MonitorGauges`): the alert rules and the Grafana dashboard in
    `serving/prometheus` and the table in docs/operations.md name these metrics and labels."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("workbench_requests", "Prediction requests", ["version", "status"],
                                registry=self.registry)  # fmt: skip
        self.rows = Counter("workbench_predicted_rows", "Rows predicted", ["version"], registry=self.registry)
        self.errors = Counter("workbench_errors", "Failed requests by kind", ["kind"], registry=self.registry)
        self.outcomes = Counter("workbench_outcomes", "Outcomes received on /feedback", registry=self.registry)
        self.latency = Histogram("workbench_request_latency_seconds", "Prediction latency", ["version"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip


class _Predictions:
    """POST /predict: picks the model, reads the body within its limit, answers (off the loop if large)."""

    def __init__(self, slot: ModelSlot, canary: Canary | None, metrics: ServerMetrics,
                 logger: PredictionLogger | None, shadow: Shadow | None, log_proba: bool) -> None:  # fmt: skip
        self.slot, self.canary, self.metrics, self.logger = slot, canary, metrics, logger
        self.shadow = shadow
        self.log_proba = log_proba and logger is not None
        self.large: anyio.CapacityLimiter | None = None  # made in the event loop, on first use

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        use_canary = self.canary is not None and self.canary.chosen(request.headers.get(KEY_HEADER) or None,
                                                                    self.slot.parsed.name)  # fmt: skip
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
        if self.logger is not None:  # the live error rate per version and window (`quality.live`)
            self.logger.log_failure(model.version.version, 500, kind)
        return JSONResponse({"error": message}, status_code=500, headers={"X-Model-Version": version})

    def predicted(self, inputs: Conformed, outputs: list[Any], model: LoadedModel, use_canary: bool,
                  elapsed: float) -> JSONResponse:  # fmt: skip
        version = model.version.version
        request_id = uuid.uuid4().hex
        self.metrics.requests.labels(str(version), "200").inc()
        self.metrics.rows.labels(str(version)).inc(len(outputs))
        self.metrics.latency.labels(str(version)).observe(elapsed)
        if self.logger is not None:
            self.logger.log_request(request_id, version, inputs, outputs, elapsed * 1000,
                                    model.predictor if self.log_proba else None)  # fmt: skip
        if self.shadow is not None:
            self.shadow.submit(request_id, inputs, model.schema)
        body = {"predictions": outputs, "model": model.version.name, "version": version, "request_id": request_id}
        if self.canary is not None:
            body["canary"] = use_canary
        return JSONResponse(body, headers={"X-Model-Version": str(version)})


class _Feedback:
    """POST /feedback: outcomes of earlier answers, appended by `workbench.quality.outcomes.record_outcomes`.

    The body is read within the same limit as /predict's; its shape is checked here (one outcome
    or {"outcomes": [...]}), each outcome by `record_outcomes`, which writes nothing unless all are
    valid. Checking and writing run in a worker thread, one batch at a time (the appends of one
    process never interleave), so the event loop keeps answering /predict meanwhile."""

    def __init__(self, slot: ModelSlot, metrics: ServerMetrics) -> None:
        self.slot, self.metrics = slot, metrics
        self.writer: anyio.CapacityLimiter | None = None  # made in the event loop, on first use

    async def __call__(self, request: Request) -> Response:
        try:
            raw = await read_body(request, hint="Send at most 10,000 outcomes per request.")
        except InputError as exc:
            self.metrics.errors.labels("feedback").inc()
            return JSONResponse(exc.body, status_code=exc.status, headers={"Connection": "close"})
        self.writer = self.writer or anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(self.record, raw, limiter=self.writer)

    def record(self, raw: bytes) -> JSONResponse:
        from workbench.quality.outcomes import record_outcomes

        try:
            counts = record_outcomes(self.slot.ws, self.slot.parsed.name, feedback_items(raw), "feedback")
        except InputError as exc:
            self.metrics.errors.labels("feedback").inc()
            return JSONResponse(exc.body, status_code=exc.status)
        except WorkbenchError as exc:
            self.metrics.errors.labels("feedback").inc()
            return JSONResponse({"error": exc.message, "hint": exc.hint or _FEEDBACK_HINT}, status_code=400)
        self.metrics.outcomes.inc(counts["recorded"])
        return JSONResponse(counts)


def feedback_items(raw: bytes) -> Any:
    """The outcomes of a /feedback body: one object, or what is under "outcomes" (400 for another
    shape); the outcomes themselves are checked by `record_outcomes`."""
    try:
        body = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise InputError(400, f"The body is not JSON: {exc}.", hint=_FEEDBACK_HINT) from exc
    if not isinstance(body, dict):
        raise InputError(400, f"The body must be a JSON object, not {type(body).__name__}.", hint=_FEEDBACK_HINT)
    items = body.get("outcomes", [body])
    if "outcomes" in body and len(body) > 1:
        raise InputError(400, 'A batch is {"outcomes": [...]} with nothing beside it.', hint=_FEEDBACK_HINT)
    return items


async def read_body(request: Request, hint: str = _ROWS_HINT) -> bytes:
    """The request body, or a 413 as soon as it is known to exceed MAX_BODY_BYTES: from its
    Content-Length before reading anything, else (chunked) by counting, holding at most the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(f"Payload of {int(declared):,} bytes is", hint)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large("Payload (still being sent) is", hint)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str, hint: str) -> InputError:
    return InputError(413, f"{what} larger than the limit of {MAX_BODY_BYTES:,} bytes.", hint=hint)


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
    shadow: Shadow | None = None,
    log_proba: bool = True,
) -> FastAPI:
    """The ASGI app serving `slot` (and optionally a canary and a shadow), with optional bearer-token auth.
    Everything but /health and /metrics needs the token; /docs and /openapi.json exist only with `docs`.
    `log_proba`: log a classifier's probabilities with each prediction (when `logger` is given)."""
    app = FastAPI(title="Workbench model server", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = ServerMetrics()
    # Drift and live quality come from the prediction log and the registry's training snapshot: gauges
    # computed off the scrape path; a bundle (a container's one model, no registry) has neither reference.
    if logger is not None and getattr(slot.source, "has_registry", True):
        metrics.registry.register(MonitorGauges(slot.ws, slot.parsed.name, lambda: [slot.current.version.version]))
    app.state.metrics = metrics
    app.state.canary = canary  # the guard stops a canary significantly worse than production (its fraction)
    expected = f"Bearer {token}".encode() if token else None
    predictions = _Predictions(slot, canary, metrics, logger, shadow, log_proba)
    feedback = _Feedback(slot, metrics)

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

    @app.post("/feedback")
    async def record_feedback(request: Request) -> Response:
        return await feedback(request) if authorized(request) else refuse()

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
            "shadow": shadow.status() if shadow else None, "log_proba": predictions.log_proba,
        }  # fmt: skip
        return JSONResponse(body)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if docs:
        _add_docs(app, authorized, refuse)
    return app

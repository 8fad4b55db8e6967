"""The model server's HTTP API (FastAPI): /predict, /health, /metadata, /metrics.

Request handling is deliberately lean (raw body, json, one array or DataFrame, one predict call) because
single-row latency is what a model server is judged on. Every client mistake becomes a 4xx JSON
error from `inputs.InputError`; a failure inside the model is a 500 with the exception's message
(and counted), never a dropped connection.
"""

from __future__ import annotations

import hmac
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from workbench.serving.inputs import InputError, conform, parse_body
from workbench.serving.models import LoadedModel, ModelSlot
from workbench.serving.predlog import PredictionLogger

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


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


def create_app(
    slot: ModelSlot,
    *,
    canary: Canary | None = None,
    token: str | None = None,
    logger: PredictionLogger | None = None,
) -> FastAPI:
    """The ASGI app serving `slot` (and optionally a canary), with optional bearer-token auth."""
    app = FastAPI(title="Workbench model server", docs_url="/docs", redoc_url=None)
    metrics = ServerMetrics()
    app.state.metrics = metrics
    expected = f"Bearer {token}".encode() if token else None

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
        if not authorized(request):
            return refuse()
        started = time.perf_counter()
        use_canary = canary is not None and random.random() < canary.fraction
        model = canary.model if use_canary else slot.current  # one reference for the whole request
        version = model.version.version
        try:
            inputs = conform(parse_body(await request.body(), request.headers.get("content-type")), model.schema)
        except InputError as exc:
            metrics.requests.labels(str(version), str(exc.status)).inc()
            metrics.errors.labels("input").inc()
            return JSONResponse(exc.body, status_code=exc.status)
        try:
            outputs = model.predictor.predict(inputs)
        except Exception as exc:  # the model itself failed on valid-looking input
            metrics.requests.labels(str(version), "500").inc()
            metrics.errors.labels("model").inc()
            return JSONResponse({"error": f"The model failed: {type(exc).__name__}: {exc}"}, status_code=500)
        elapsed = time.perf_counter() - started
        request_id = uuid.uuid4().hex
        metrics.requests.labels(str(version), "200").inc()
        metrics.rows.labels(str(version)).inc(len(outputs))
        metrics.latency.labels(str(version)).observe(elapsed)
        if logger is not None:
            logger.log(request_id, version, inputs.records(), outputs, elapsed * 1000)
        body = {"predictions": outputs, "model": model.version.name, "version": version, "request_id": request_id}
        if canary is not None:
            body["canary"] = use_canary
        return JSONResponse(body, headers={"X-Model-Version": str(version)})

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

    return app

"""API: the HTTP front end. Raw body in, bytes out; one error handler.

Routes only translate: bodies become the DataPlane's terms (protocol/), the DataPlane
does the rest. Infer, the hot route, is a bare ASGI app in front of FastAPI
(infer_route.py); health, metadata, statistics, the repository, the admin routes and the
TF Serving / TorchServe compatibility routes are FastAPI's.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware

from gateway.api import compat_http
from gateway.api.admin import admin_router
from gateway.api.infer_route import GZIP_MIN_BYTES, ASGIApp, InferRoute, document
from gateway.api.repository import repository_router
from gateway.api.request_id import RequestIdMiddleware
from gateway.api.responses import error_response, json_response
from gateway.auth import AccessPolicy
from gateway.dataplane import DataPlane
from gateway.errors import BadRequest, GatewayError
from gateway.guards import AuthMiddleware
from gateway.lifecycle import Relay, RepositoryControl
from gateway.protocol.grpc_errors import internal
from gateway.router.selection import PIN_HEADER

log = logging.getLogger(__name__)


def create_app(
    dataplane: DataPlane,
    *,
    max_body_bytes: int,
    body_timeout_s: float = 30.0,
    policy: AccessPolicy | None = None,
    lifecycle: RepositoryControl | None = None,
    relay: Relay | None = None,
) -> ASGIApp:
    """The HTTP app over `dataplane`: auth, then X-Request-ID, then infer, then FastAPI."""
    app = FastAPI(
        title="servegate",
        summary="KServe v2 (Open Inference Protocol) gateway: PyTorch, TensorFlow, ONNX, JAX",
        version=dataplane.server_metadata()["version"],
    )

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> Response:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> Response:
        return json_response({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        return error_response(BadRequest(str(exc.errors())))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _: Exception) -> Response:
        return error_response(internal(log, f"{request.method} {request.url.path}"))

    @app.get("/v2/health/live", tags=["health"])
    async def live() -> Response:
        ok = dataplane.server_live()
        return json_response({"live": ok}, 200 if ok else 503)

    @app.get("/v2/health/ready", tags=["health"])
    async def ready() -> Response:
        ok = await dataplane.server_ready()
        return json_response({"ready": ok}, 200 if ok else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        """Prometheus text format: requests, latencies, batch rows and variant health."""
        return Response(
            dataplane.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/v2", tags=["metadata"])
    async def server_metadata() -> Response:
        return json_response(dataplane.server_metadata())

    @app.get("/v2/models/stats", tags=["statistics"])
    @app.get("/v2/models/{model}/stats", tags=["statistics"])
    @app.get("/v2/models/{model}/versions/{version}/stats", tags=["statistics"])
    async def model_stats(model: str = "", version: str = "") -> Response:
        """Triton's statistics extension, from the gateway's own timing."""
        return json_response({"model_stats": dataplane.model_statistics(model, version)})

    @app.get("/v2/models/{model}/config", tags=["metadata"])
    @app.get("/v2/models/{model}/versions/{version}/config", tags=["metadata"])
    async def model_config(model: str, request: Request, version: str = "") -> Response:
        """Triton's model configuration extension, derived from model.yaml."""
        pin = request.headers.get(PIN_HEADER)
        return json_response(dataplane.model_config(model, version, pin))

    @app.get("/v2/models/{model}", tags=["metadata"])
    @app.get("/v2/models/{model}/versions/{version}", tags=["metadata"])
    async def model_metadata(model: str, request: Request, version: str = "") -> Response:
        pin = request.headers.get(PIN_HEADER)
        return json_response(await dataplane.model_metadata(model, version, pin))

    @app.get("/v2/models/{model}/ready", tags=["health"])
    @app.get("/v2/models/{model}/versions/{version}/ready", tags=["health"])
    async def model_ready(model: str, request: Request, version: str = "") -> Response:
        ok = await dataplane.model_ready(model, version, request.headers.get(PIN_HEADER))
        return json_response({"name": model, "ready": ok}, 200 if ok else 503)

    app.include_router(admin_router(dataplane, body_timeout_s, relay))
    app.include_router(
        compat_http.router(dataplane, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s)
    )
    if lifecycle is not None:
        app.include_router(repository_router(lifecycle, body_timeout_s))
    document(app)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES)
    # Outside FastAPI's own middleware: infer pays for none of it.
    front: ASGIApp = InferRoute(
        app, dataplane, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s
    )
    front = RequestIdMiddleware(front)
    if policy is not None and policy.enabled:
        # Outermost: a refused call never reaches admission or the body.
        front = AuthMiddleware(front, policy=policy)
    return front

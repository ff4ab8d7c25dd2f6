"""API: the FastAPI v2 front end. Raw body in, bytes out; one error handler.

Routes only translate: the body becomes an InferRequest (protocol/v2_http.py), the
DataPlane does the rest, and the answer is encoded as JSON or with the binary tensor
extension, as the client asked.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware

from gateway.admission import Ticket
from gateway.api import compat_http
from gateway.api.admin import admin_router
from gateway.api.bodies import declared_length, header_length, read_body
from gateway.api.repository import repository_router
from gateway.api.request_id import RequestIdMiddleware
from gateway.api.responses import error_response, json_response
from gateway.auth import AccessPolicy
from gateway.dataplane import DataPlane
from gateway.errors import BadRequest, GatewayError
from gateway.guards import AuthMiddleware
from gateway.lifecycle import Lifecycle
from gateway.protocol import v2_http
from gateway.protocol.grpc_errors import internal
from gateway.router.selection import PIN_HEADER

log = logging.getLogger(__name__)

JSON = "application/json"


def create_app(
    dataplane: DataPlane,
    *,
    max_body_bytes: int,
    body_timeout_s: float = 30.0,
    policy: AccessPolicy | None = None,
    lifecycle: Lifecycle | None = None,
) -> FastAPI:
    """The HTTP app: v2 health, metadata and infer routes over `dataplane`."""
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

    @app.post("/v2/models/{model}/infer", tags=["inference"])
    @app.post("/v2/models/{model}/versions/{version}/infer", tags=["inference"])
    async def infer(model: str, request: Request, version: str = "") -> Response:
        """v2 inference: JSON tensors, or a JSON header plus binary blobs (binary extension)."""
        pin = request.headers.get(PIN_HEADER)
        declared = declared_length(request, max_body_bytes)
        ticket = dataplane.admit(model, version, pin, declared or 0, protocol="http")
        try:
            return await _infer(model, version, pin, request, ticket, declared is None)
        finally:
            ticket.release()

    async def _infer(
        model: str, version: str, pin: str | None, request: Request, ticket: Ticket, unsized: bool
    ) -> Response:
        body = await read_body(request, max_body_bytes, body_timeout_s)
        if unsized:  # no Content-Length: admitted with 0 bytes, now that they are known
            ticket.resize(len(body), retry_after=1.0)
        json_length = header_length(request)
        if json_length == 0:
            spec = _raw_input_spec(dataplane, model, version, pin)
            req = v2_http.decode_raw_request(
                body,
                name=spec.name,
                datatype=spec.datatype,
                shape=spec.shape,
                model_name=model,
                model_version=version,
            )
        else:
            req = v2_http.decode_request(body, json_length, model_name=model, model_version=version)
        response = await dataplane.infer(
            req, pin=pin, protocol="http", ticket=ticket, headers=request.headers
        )
        out, length = v2_http.encode_response(response, v2_http.binary_outputs(req))
        if length is None:
            return Response(out, media_type=JSON)
        return Response(
            out,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(length)},
        )

    app.include_router(admin_router(dataplane, body_timeout_s))
    app.include_router(
        compat_http.router(dataplane, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s)
    )
    if lifecycle is not None:
        app.include_router(repository_router(lifecycle, body_timeout_s))
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    if policy is not None and policy.enabled:
        # Outermost: a refused call never reaches admission or the body.
        app.add_middleware(AuthMiddleware, policy=policy)
    return app


def _raw_input_spec(dataplane: DataPlane, model: str, version: str, pin: str | None) -> Any:
    """The one input a raw binary request may carry (binary extension's rules)."""
    target = dataplane.resolve(model, version, pin)
    inputs = target.model.signature.inputs
    if (
        len(inputs) != 1
        or sum(d == -1 for d in inputs[0].shape) > 1
        or (inputs[0].datatype == "BYTES")
    ):
        raise BadRequest(
            "a raw binary request (Inference-Header-Content-Length: 0) needs a model with "
            "exactly one non-BYTES input and at most one variable dimension"
        )
    return inputs[0]

"""API: the FastAPI v2 front end. Raw body in, bytes out; one error handler.

Routes only translate: the body becomes an InferRequest (protocol/v2_http.py), the
DataPlane does the rest, and the answer is encoded as JSON or with the binary tensor
extension, as the client asked.
"""

from __future__ import annotations

import asyncio
import logging
import math
import zlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from gateway.admission import Ticket
from gateway.auth import AccessPolicy
from gateway.dataplane import DataPlane
from gateway.errors import BadRequest, GatewayError, PayloadTooLarge, RequestTimeout
from gateway.guards import AuthMiddleware
from gateway.lifecycle import Lifecycle
from gateway.protocol import v2_http
from gateway.protocol.grpc_errors import internal
from gateway.router.selection import PIN_HEADER

log = logging.getLogger(__name__)

JSON = "application/json"


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(v2_http.dumps(doc), status_code=status, media_type=JSON, headers=headers)


def error_response(exc: GatewayError) -> Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return _json({"error": exc.message}, exc.http_status, headers)


def _digits(value: str, what: str) -> int:
    """A header that must be a non-negative decimal integer (ASCII digits only: str.isdigit
    also admits '²' and other digits int() refuses)."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        raise BadRequest(f"{what} must be a non-negative integer")
    return int(value)


def declared_length(request: Request, limit: int) -> int | None:
    """Content-Length, if given; 413 at once when it is past `limit`."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    declared = _digits(value, "Content-Length")
    if declared > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    return declared


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, decompressed if gzip/deflate; 413 past `limit` either way, 408 when
    the client has not sent it all within `timeout`."""
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"request body not received within {timeout:g} s") from None
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        body = _decompress(body, encoding, limit)
    elif encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding '{encoding}'")
    return body


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    return out


def _header_length(request: Request) -> int | None:
    value = request.headers.get(v2_http.HEADER_LENGTH)
    return None if value is None else _digits(value, "Inference-Header-Content-Length")


def _repository_parameters(doc: Any) -> None:
    """A load/unload body: only what the repository extension defines, nothing we ignore."""
    if doc is None:
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters", {}), dict):
        raise BadRequest("the body must be an object, with an optional 'parameters' object")
    unsupported = sorted(set(doc.get("parameters", {})) - {"unload_dependents"})
    if unsupported:
        raise BadRequest(
            f"parameters {unsupported} are not supported: load reads model.yaml and the "
            "version folders from the repository; change them there"
        )


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
        return _json({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        return error_response(BadRequest(str(exc.errors())))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _: Exception) -> Response:
        return error_response(internal(log, f"{request.method} {request.url.path}"))

    @app.get("/v2/health/live", tags=["health"])
    async def live() -> Response:
        ok = dataplane.server_live()
        return _json({"live": ok}, 200 if ok else 503)

    @app.get("/v2/health/ready", tags=["health"])
    async def ready() -> Response:
        ok = await dataplane.server_ready()
        return _json({"ready": ok}, 200 if ok else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        """Prometheus text format: requests, latencies, batch rows and variant health."""
        return Response(
            dataplane.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/admin/runners", tags=["admin"])
    async def runners() -> Response:
        """The local runners `servegate up` supervises: state, restarts, pid, endpoint."""
        return _json({"runners": dataplane.runners()})

    if lifecycle is not None:

        @app.post("/v2/repository/index", tags=["repository"])
        async def repository_index(request: Request) -> Response:
            """Every model folder of the repository, and whether it is loaded and ready."""
            body = await read_body(request, 1 << 16, body_timeout_s)
            doc = v2_http.loads_object(body) if body.strip() else {}
            ready = doc.get("ready", False)
            if not isinstance(ready, bool):
                raise BadRequest("'ready' must be a boolean")
            return _json(await lifecycle.index(ready_only=ready))

        @app.post("/v2/repository/models/{model}/load", tags=["repository"])
        async def repository_load(model: str, request: Request) -> Response:
            """Reads the model's folder again and swaps it in, losing no request."""
            body = await read_body(request, 1 << 16, body_timeout_s)
            _repository_parameters(v2_http.loads_object(body) if body.strip() else None)
            await lifecycle.load(model)
            return _json({})

        @app.post("/v2/repository/models/{model}/unload", tags=["repository"])
        async def repository_unload(model: str, request: Request) -> Response:
            """Stops serving the model once the requests in flight are answered."""
            body = await read_body(request, 1 << 16, body_timeout_s)
            _repository_parameters(v2_http.loads_object(body) if body.strip() else None)
            await lifecycle.unload(model)
            return _json({})

    @app.get("/v2", tags=["metadata"])
    async def server_metadata() -> Response:
        return _json(dataplane.server_metadata())

    @app.get("/v2/models/stats", tags=["statistics"])
    @app.get("/v2/models/{model}/stats", tags=["statistics"])
    @app.get("/v2/models/{model}/versions/{version}/stats", tags=["statistics"])
    async def model_stats(model: str = "", version: str = "") -> Response:
        """Triton's statistics extension, from the gateway's own timing."""
        return _json({"model_stats": dataplane.model_statistics(model, version)})

    @app.get("/v2/models/{model}/config", tags=["metadata"])
    @app.get("/v2/models/{model}/versions/{version}/config", tags=["metadata"])
    async def model_config(model: str, request: Request, version: str = "") -> Response:
        """Triton's model configuration extension, derived from model.yaml."""
        return _json(dataplane.model_config(model, version, request.headers.get(PIN_HEADER)))

    @app.get("/v2/models/{model}", tags=["metadata"])
    @app.get("/v2/models/{model}/versions/{version}", tags=["metadata"])
    async def model_metadata(model: str, request: Request, version: str = "") -> Response:
        pin = request.headers.get(PIN_HEADER)
        return _json(await dataplane.model_metadata(model, version, pin))

    @app.get("/v2/models/{model}/ready", tags=["health"])
    @app.get("/v2/models/{model}/versions/{version}/ready", tags=["health"])
    async def model_ready(model: str, request: Request, version: str = "") -> Response:
        ok = await dataplane.model_ready(model, version, request.headers.get(PIN_HEADER))
        return _json({"name": model, "ready": ok}, 200 if ok else 503)

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
        header_length = _header_length(request)
        if header_length == 0:
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
            req = v2_http.decode_request(
                body, header_length, model_name=model, model_version=version
            )
        response = await dataplane.infer(req, pin=pin, protocol="http", ticket=ticket)
        out, length = v2_http.encode_response(response, v2_http.binary_outputs(req))
        if length is None:
            return Response(out, media_type=JSON)
        return Response(
            out,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(length)},
        )

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

"""API: the FastAPI v2 front end. Raw body in, bytes out; one error handler.

Routes only translate: the body becomes an InferRequest (protocol/v2_http.py), the
DataPlane does the rest, and the answer is encoded as JSON or with the binary tensor
extension, as the client asked.
"""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from gateway.dataplane import DataPlane
from gateway.errors import BadRequest, GatewayError, PayloadTooLarge
from gateway.protocol import v2_http
from gateway.router.selection import PIN_HEADER

JSON = "application/json"


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(v2_http.dumps(doc), status_code=status, media_type=JSON, headers=headers)


def error_response(exc: GatewayError) -> Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return _json({"error": exc.message}, exc.http_status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, decompressed if gzip/deflate; 413 past `limit` either way."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
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
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, got '{value}'")
    return int(value)


def create_app(dataplane: DataPlane, *, max_body_bytes: int) -> FastAPI:
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
    async def _unexpected(_: Request, exc: Exception) -> Response:
        return error_response(GatewayError(f"internal error: {type(exc).__name__}: {exc}"))

    @app.get("/v2/health/live", tags=["health"])
    async def live() -> Response:
        return _json({"live": True})

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

    @app.get("/v2", tags=["metadata"])
    async def server_metadata() -> Response:
        return _json(dataplane.server_metadata())

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
        body = await read_body(request, max_body_bytes)
        header_length = _header_length(request)
        pin = request.headers.get(PIN_HEADER)
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
        response = await dataplane.infer(req, pin=pin, protocol="http")
        out, length = v2_http.encode_response(response, v2_http.binary_outputs(req))
        if length is None:
            return Response(out, media_type=JSON)
        return Response(
            out,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(length)},
        )

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

"""API: the v2 infer route as a bare ASGI app, in front of the FastAPI app.

Infer is the one route whose cost per request matters, and FastAPI's layers (its error
and telemetry middleware, routing, dependency solving) cost more than the JSON codec of a
small model (profiled in loadtests/README.md). So `POST /v2/models/{m}[/versions/{v}]/infer`
is answered here directly and every other path goes on to FastAPI. What the route does is
what it did as a FastAPI route: admission on the declared length before the body is read,
JSON or binary-extension bodies, the v2 error body on any error, and a gzip answer (at
1 KiB and above) to a client that accepts one.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Ticket
from gateway.api.bodies import declared_length, header_length, read_body
from gateway.api.responses import error_response
from gateway.config import TensorSpec
from gateway.dataplane import DataPlane
from gateway.errors import BadRequest, GatewayError
from gateway.protocol import v2_http
from gateway.protocol.grpc_errors import internal
from gateway.router.selection import PIN_HEADER

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]

PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
GZIP_MIN_BYTES = 1024
JSON = "application/json"


class InferRoute:
    """Answers the v2 infer route itself; hands every other request to `app`."""

    def __init__(
        self, app: ASGIApp, dataplane: DataPlane, *, max_body_bytes: int, body_timeout_s: float
    ) -> None:
        self.app = app
        self.dataplane = dataplane
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        match = PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if request.method != "POST":
            response: Response = error_response(
                GatewayError(f"method {request.method} not allowed: infer is POST")
            )
            response.status_code = 405
            response.headers["Allow"] = "POST"
        else:
            try:
                response = await self._infer(match[1], match[2] or "", request)
            except GatewayError as exc:
                response = error_response(exc)
            except Exception:
                response = error_response(internal(log, f"POST {scope['path']}"))
        await _compressed(response, request)(scope, receive, send)

    async def _infer(self, model: str, version: str, request: Request) -> Response:
        pin = request.headers.get(PIN_HEADER)
        declared = declared_length(request, self.max_body_bytes)
        ticket = self.dataplane.admit(model, version, pin, declared or 0, protocol="http")
        try:
            return await self._answer(model, version, pin, request, ticket, declared is None)
        finally:
            ticket.release()

    async def _answer(
        self,
        model: str,
        version: str,
        pin: str | None,
        request: Request,
        ticket: Ticket,
        unsized: bool,
    ) -> Response:
        body = await read_body(request, self.max_body_bytes, self.body_timeout_s)
        if unsized:  # no Content-Length: admitted with 0 bytes, now that they are known
            ticket.resize(len(body), retry_after=1.0)
        json_length = header_length(request)
        if json_length == 0:
            spec = self._raw_input(model, version, pin)
            req = v2_http.decode_raw_request(
                body, name=spec.name, datatype=spec.datatype, shape=spec.shape,
                model_name=model, model_version=version,
            )  # fmt: skip
        else:
            req = v2_http.decode_request(body, json_length, model_name=model, model_version=version)
        response = await self.dataplane.infer(
            req, pin=pin, protocol="http", ticket=ticket, headers=request.headers
        )
        out, length = v2_http.encode_response(response, v2_http.binary_outputs(req))
        if length is None:
            return Response(out, media_type=JSON)
        return Response(
            out,
            media_type="application/octet-stream",
            headers={v2_http.HEADER_LENGTH: str(length)},
        )

    def _raw_input(self, model: str, version: str, pin: str | None) -> TensorSpec:
        """The one input a raw binary request may carry (the binary extension's rules)."""
        inputs = self.dataplane.resolve(model, version, pin).model.signature.inputs
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


def _compressed(response: Response, request: Request) -> Response:
    """`response` gzipped when the client accepts gzip and the body is worth it."""
    body = bytes(response.body)
    if len(body) < GZIP_MIN_BYTES or "gzip" not in request.headers.get("accept-encoding", ""):
        return response
    packed = gzip.compress(body, compresslevel=6)
    response.body = packed
    response.headers["Content-Encoding"] = "gzip"
    response.headers["Content-Length"] = str(len(packed))
    response.headers.append("Vary", "Accept-Encoding")
    return response


def document(app: FastAPI) -> None:
    """Lists the infer route in `app`'s OpenAPI schema (/docs), though `app` never sees it."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain()
            for path, params in (
                ("/v2/models/{model}/infer", ("model",)),
                ("/v2/models/{model}/versions/{version}/infer", ("model", "version")),
            ):
                schema["paths"][path] = {"post": _operation(params)}
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _operation(params: tuple[str, ...]) -> dict[str, Any]:
    return {
        "tags": ["inference"],
        "summary": "Infer",
        "description": "v2 inference: JSON tensors, or a JSON header plus binary blobs "
        "(binary tensor extension, `Inference-Header-Content-Length`).",
        "operationId": "infer_" + "_".join(params),
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ],
        "requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
        "responses": {
            "200": {"description": "The outputs", "content": {JSON: {}}},
            "400": {"description": "Malformed request"},
            "404": {"description": "Unknown model or version"},
            "429": {"description": "Overloaded (Retry-After)"},
            "503": {"description": "No variant can serve now"},
        },
    }

"""Front door: the two enforcers of auth.py's AccessPolicy, run before any routing.

`AuthMiddleware` is a pure ASGI middleware (no BaseHTTPMiddleware: no task, no body
wrapping on the hot path) that answers 401 / 403 with the v2 error body itself.
`GrpcAuthInterceptor` is a grpc.aio server interceptor that aborts with UNAUTHENTICATED /
PERMISSION_DENIED. Both check the route's scope first, so an open route costs one lookup.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import grpc

from gateway.auth import AccessPolicy, Verdict, bearer
from gateway.errors import Forbidden, GatewayError, Unauthorized
from gateway.scopes import Scope

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]

REFUSALS: Mapping[Verdict, GatewayError] = {
    Verdict.MISSING: Unauthorized("missing API key: send 'Authorization: Bearer <key>'"),
    Verdict.UNKNOWN: Unauthorized("unknown API key"),
    Verdict.FORBIDDEN: Forbidden("this API key's scope does not allow this call: it needs admin"),
}
"""What each refusal answers. FORBIDDEN always means 'needs admin': infer is the only
scope below admin, and a missing key is MISSING whatever the route requires."""

_CHALLENGE: Mapping[Verdict, bytes] = {
    Verdict.MISSING: b'Bearer realm="servegate"',
    Verdict.UNKNOWN: b'Bearer realm="servegate", error="invalid_token"',
    Verdict.FORBIDDEN: b'Bearer realm="servegate", error="insufficient_scope", scope="admin"',
}
"""RFC 6750 section 3: the WWW-Authenticate value of each refusal."""


def _refusal(verdict: Verdict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    error = REFUSALS[verdict]
    body = json.dumps({"error": error.message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", _CHALLENGE[verdict]),
    ]
    return error.http_status, headers, body


class AuthMiddleware:
    """Refuses an HTTP call whose key does not cover its path, before the app routes it.

    Add it last (outermost) with `app.add_middleware(AuthMiddleware, policy=policy)`,
    and only when `policy.enabled`. WebSocket calls are refused by closing with 1008.
    """

    def __init__(self, app: ASGIApp, *, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy
        self._responses = {v: _refusal(v) for v in REFUSALS}

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            required = self.policy.http_scope(scope["path"])
            if required is not Scope.OPEN:
                verdict = self.policy.decide(required, bearer(_header(scope, b"authorization")))
                if verdict is not Verdict.ALLOW:
                    await self._refuse(kind, verdict, send)
                    return
        await self.app(scope, receive, send)

    async def _refuse(self, kind: str, verdict: Verdict, send: Send) -> None:
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
            return
        status, headers, body = self._responses[verdict]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Message, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:  # ASGI servers lower-case header names
            return value  # type: ignore[no-any-return]
    return None


def _metadata(metadata: Iterable[tuple[str, str | bytes]] | None, name: str) -> str | bytes | None:
    for key, value in metadata or ():
        if key == name:  # gRPC metadata keys are lower-case on the wire
            return value
    return None


def _aborting_handler(error: GatewayError) -> grpc.RpcMethodHandler:
    """A handler that aborts at once, whatever the client's arity.

    It is request-streaming so that the server reads nothing (a unary handler would first
    receive the whole request, up to the message limit, before it could refuse), and it
    has no deserializer, so nothing is parsed. A client of any of the four arities gets
    the status alone.
    """

    async def abort(_: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(error.grpc_code, error.message)

    return grpc.stream_unary_rpc_method_handler(abort)


class GrpcAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses a gRPC call whose `authorization` metadata does not cover its method.

    Pass it as `grpc.aio.server(interceptors=[GrpcAuthInterceptor(policy)])`, and only
    when `policy.enabled`. A refused call never reaches the service's handler lookup.
    """

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy
        self._handlers = {v: _aborting_handler(e) for v, e in REFUSALS.items()}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        required = self.policy.grpc_scope(handler_call_details.method)
        if required is not Scope.OPEN:
            metadata = handler_call_details.invocation_metadata
            token = bearer(_metadata(metadata, "authorization"))  # type: ignore[arg-type]
            verdict = self.policy.decide(required, token)
            if verdict is not Verdict.ALLOW:
                return self._handlers[verdict]
        return await continuation(handler_call_details)

"""API: a client's request id, echoed on the answer (HTTP `X-Request-ID`).

Tracing proxies and clients set it to follow one request through the services it crosses;
the v2 body's own `id` is echoed by the protocol, this is the header's twin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]

HEADER = b"x-request-id"


class RequestIdMiddleware:
    """Copies the request's X-Request-ID (if any) onto the response's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = next((v for k, v in scope["headers"] if k == HEADER), None)
        if rid is None:
            await self.app(scope, receive, send)
            return

        async def echo(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, rid)]
            await send(message)

        await self.app(scope, receive, echo)

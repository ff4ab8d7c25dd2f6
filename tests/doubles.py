"""Test doubles, named for what they are. Used only where a test is about the HTTP/gRPC
layer or the dataplane, never where a test claims end-to-end behaviour."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.tensors import InferRequest, InferResponse

Handler = Callable[[InferRequest], Awaitable[InferResponse] | InferResponse]


class FunctionBackend:
    """A Backend whose `infer` is a plain function (httpx's MockTransport, for runners)."""

    protocol = "v2"

    def __init__(self, name: str, handler: Handler, *, is_ready: bool = True) -> None:
        self.name = name
        self.handler = handler
        self.is_ready = is_ready
        self.calls: list[tuple[InferRequest, float]] = []
        self.closed = False

    async def infer(self, request: InferRequest, *, deadline: float) -> InferResponse:
        self.calls.append((request, deadline))
        result = self.handler(request)
        if isinstance(result, Awaitable):
            return await result
        return result

    async def ready(self) -> bool:
        return self.is_ready

    async def aclose(self) -> None:
        self.closed = True

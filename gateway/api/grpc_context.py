"""API: what a gRPC front end reads off a call's context, the same way for every service:
the variant pin, the request id, the text metadata (a sticky policy's key), the deadline."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from gateway.router.selection import PIN_HEADER

REQUEST_ID = "x-request-id"


def metadata(context: grpc.aio.ServicerContext, name: str) -> str | None:
    """One text metadata value of the call (binary `-bin` values are never names)."""
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else None
    return None


def headers(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata, as the dataplane reads a routing key from it."""
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


def pin(context: grpc.aio.ServicerContext) -> str | None:
    return metadata(context, PIN_HEADER)


def deadline(context: grpc.aio.ServicerContext, clock: Callable[[], float]) -> float | None:
    """The client's own deadline on `clock`, if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else clock() + remaining

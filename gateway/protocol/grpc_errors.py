"""Protocol: the one exception -> gRPC status mapping, for every grpc.aio servicer we run.

The gateway's front end, our v2 runners and the tf runner all answer through `guarded`.
A GatewayError becomes its status code and message, with its retry hint in the trailing
metadata: `retry-after` (whole seconds, as HTTP's header) and gRPC's own
`grpc-retry-pushback-ms`. A request too large to ever be admitted carries a pushback of
-1, which tells a gRPC client with a retry policy not to retry at all. Any other exception
is logged with an error id and answered INTERNAL with only that id: no exception text,
path or trace reaches a client.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc

from gateway.errors import GatewayError, PayloadTooLarge

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def error_id() -> str:
    """A short id that ties a client's INTERNAL answer to the logged traceback."""
    return uuid.uuid4().hex[:12]


def retry_metadata(exc: GatewayError) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that carries `exc`'s retry hint, if it has one."""
    if exc.retry_after is not None:
        return (
            ("retry-after", str(max(1, math.ceil(exc.retry_after)))),
            ("grpc-retry-pushback-ms", str(max(0, round(exc.retry_after * 1000)))),
        )
    if isinstance(exc, PayloadTooLarge):
        return (("grpc-retry-pushback-ms", "-1"),)
    return ()


async def abort(context: grpc.aio.ServicerContext, exc: GatewayError) -> NoReturn:
    """Ends the call with `exc`'s status, message and retry hint."""
    metadata = retry_metadata(exc)
    if metadata:
        context.set_trailing_metadata(metadata)
    await context.abort(exc.grpc_code, exc.message)
    raise AssertionError("unreachable: abort raises")


def internal(log: logging.Logger, what: str) -> GatewayError:
    """Logs the exception being handled under a new error id; the error a client gets."""
    eid = error_id()
    log.exception("unexpected error in %s (error id %s)", what, eid)
    return GatewayError(f"internal error (error id {eid})")


def guarded(fn: Handler, what: str, log: logging.Logger) -> Handler:
    """`fn` with every exception answered as a status (see the module docstring)."""

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(request, context)
        except GatewayError as exc:
            error = exc
        except Exception:
            error = internal(log, what)
        await abort(context, error)

    call.__name__ = getattr(fn, "__name__", what)
    return call

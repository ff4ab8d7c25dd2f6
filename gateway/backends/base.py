"""Backends: the interface every runner client implements, and the one status mapping.

A backend is one variant's client: `infer` with an absolute deadline, `ready`, `aclose`.
Nothing more; metadata comes from model.yaml. No retries in here: failover is the
router's job, with the deadline in view.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import grpc

from gateway.errors import (
    BadRequest,
    DeadlineExceeded,
    GatewayError,
    Overloaded,
    Unavailable,
    Unreachable,
)
from gateway.tensors import InferRequest, InferResponse

Clock = Callable[[], float]


class Backend(Protocol):
    """One variant's runner client."""

    name: str
    protocol: str

    async def infer(self, request: InferRequest, *, deadline: float) -> InferResponse: ...

    async def ready(self) -> bool: ...

    async def aclose(self) -> None: ...


class ChannelBackend:
    """What every gRPC backend shares: its names, its clock, one channel reused by every call."""

    protocol = ""

    def __init__(
        self,
        name: str,
        endpoint: str,
        remote_model: str,
        *,
        max_message_bytes: int,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.remote_model = remote_model
        self._clock = clock
        self._options = channel_options(max_message_bytes)
        self._channel = grpc.aio.insecure_channel(endpoint, options=self._options)
        self._bind(self._channel)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        """Makes the protocol's callables on the channel (each backend's own stubs)."""

    async def aclose(self) -> None:
        await self._channel.close()


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Every backend channel's options, set in one place.

    Reconnection backs off from 100 ms to at most 1 s (gRPC's defaults: 1 s to 120 s), so
    a runner restarted at the same address is reached again within a second. (Not
    grpc.min_reconnect_backoff_ms: C-core also takes it as the connect timeout, and a
    busy TorchServe then misses it.)
    """
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1_000),
    ]


_UPSTREAM: dict[grpc.StatusCode, type[GatewayError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.INVALID_ARGUMENT: BadRequest,
    # A model missing on its runner means this variant cannot serve now.
    grpc.StatusCode.NOT_FOUND: Unavailable,
    grpc.StatusCode.CANCELLED: Unavailable,
}

# status code number (as the framed transport carries it) -> StatusCode
_BY_NUMBER: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def map_status(variant: str, code: grpc.StatusCode | int, details: str) -> GatewayError:
    """An upstream status (gRPC's, or a framed answer's code number) as a GatewayError that
    names the variant: one table for every transport."""
    if isinstance(code, int):
        status = _BY_NUMBER.get(code)
        if status is None:
            return GatewayError(f"variant '{variant}': status {code}: {details}")
        code = status
    cls = _UPSTREAM.get(code, GatewayError)
    if code == grpc.StatusCode.UNAVAILABLE and details.startswith("failed to connect"):
        cls = Unreachable  # gRPC's own words when no connection could be made
    return cls(f"variant '{variant}': {code.name}: {details}")


def map_rpc_error(variant: str, exc: grpc.aio.AioRpcError) -> GatewayError:
    """An upstream gRPC failure as a GatewayError that names the variant."""
    return map_status(variant, exc.code(), exc.details() or "")


def timeout_for(variant: str, deadline: float, clock: Clock) -> float:
    """Seconds left until `deadline`; DeadlineExceeded when none are."""
    left = deadline - clock()
    if left <= 0:
        raise DeadlineExceeded(f"variant '{variant}': deadline passed before the call")
    return left

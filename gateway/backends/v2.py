"""Backends: KServe v2 client, for our onnx and jax runners and Triton/MLServer/KServe.

Tensors travel as raw contents both ways (protocol/v2_grpc.py). The endpoint picks the
transport for the same protobuf messages: `host:port` is gRPC (one grpc.aio channel per
runner, reused by every call); `unix+framed:///path.sock` is the framed Unix socket our
own runners also serve when they run on this machine (backends/framed.py), which costs
a fraction of a gRPC hop.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from gateway.backends.base import Clock, channel_options, map_rpc_error, timeout_for
from gateway.backends.framed import FramedPool
from gateway.errors import BadRequest, GatewayError
from gateway.protocol import framed, v2_grpc
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import V2Stub
from gateway.tensors import InferRequest, InferResponse

READY_TIMEOUT_S = 2.0

_M = TypeVar("_M", bound=Message)


class Transport(Protocol):
    """How ModelInfer and ModelReady reach the runner; failures raise GatewayError."""

    async def infer(self, msg: pb.ModelInferRequest, timeout: float) -> pb.ModelInferResponse: ...

    async def ready(self, msg: pb.ModelReadyRequest, timeout: float) -> pb.ModelReadyResponse: ...

    async def aclose(self) -> None: ...


class GrpcTransport:
    """The v2 gRPC service on one reused channel."""

    def __init__(self, variant: str, endpoint: str, max_message_bytes: int) -> None:
        self._variant = variant
        self._channel = grpc.aio.insecure_channel(
            endpoint, options=channel_options(max_message_bytes)
        )
        self._stub = V2Stub(self._channel)

    async def infer(self, msg: pb.ModelInferRequest, timeout: float) -> pb.ModelInferResponse:
        try:
            return await self._stub.ModelInfer(msg, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(self._variant, exc) from None

    async def ready(self, msg: pb.ModelReadyRequest, timeout: float) -> pb.ModelReadyResponse:
        try:
            return await self._stub.ModelReady(msg, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(self._variant, exc) from None

    async def aclose(self) -> None:
        await self._channel.close()


class FramedTransport:
    """The same messages as frames over a runner's Unix socket."""

    def __init__(self, variant: str, path: str, max_message_bytes: int) -> None:
        self._variant = variant
        self._pool = FramedPool(variant, path, max_frame_bytes=max_message_bytes)

    async def infer(self, msg: pb.ModelInferRequest, timeout: float) -> pb.ModelInferResponse:
        answer = await self._pool.call(framed.INFER, msg.SerializeToString(), timeout=timeout)
        return self._parse(pb.ModelInferResponse, answer)

    async def ready(self, msg: pb.ModelReadyRequest, timeout: float) -> pb.ModelReadyResponse:
        answer = await self._pool.call(framed.READY, msg.SerializeToString(), timeout=timeout)
        return self._parse(pb.ModelReadyResponse, answer)

    def _parse(self, cls: type[_M], answer: bytes) -> _M:
        try:
            return cls.FromString(answer)
        except DecodeError as exc:
            raise GatewayError(
                f"variant '{self._variant}' answered a malformed frame: {exc}"
            ) from None

    async def aclose(self) -> None:
        await self._pool.aclose()


def transport_for(variant: str, endpoint: str, max_message_bytes: int) -> Transport:
    """Framed for a `unix+framed://` endpoint, gRPC for anything else."""
    path = framed.socket_path(endpoint)
    if path is not None:
        return FramedTransport(variant, path, max_message_bytes)
    return GrpcTransport(variant, endpoint, max_message_bytes)


class V2Backend:
    """Forwards to `remote_model` on a v2 server at `endpoint`."""

    protocol = "v2"

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
        self._transport = transport_for(name, endpoint, max_message_bytes)

    async def infer(self, request: InferRequest, *, deadline: float) -> InferResponse:
        timeout = timeout_for(self.name, deadline, self._clock)
        # The deadline travels in Triton's `timeout` parameter (microseconds) too, so the
        # runner drops work whose caller has given up instead of computing it.
        params = {**request.parameters, "timeout": max(1, int(timeout * 1e6))}
        msg = v2_grpc.request_to_pb(
            dataclasses.replace(request, model_name=self.remote_model, parameters=params)
        )
        reply = await self._transport.infer(msg, timeout)
        try:
            return v2_grpc.response_from_pb(reply)
        except BadRequest as exc:
            raise GatewayError(
                f"variant '{self.name}' answered a malformed response: {exc}"
            ) from None

    async def ready(self) -> bool:
        try:
            reply = await self._transport.ready(
                pb.ModelReadyRequest(name=self.remote_model), READY_TIMEOUT_S
            )
        except GatewayError:
            return False
        return bool(reply.ready)

    async def aclose(self) -> None:
        await self._transport.aclose()

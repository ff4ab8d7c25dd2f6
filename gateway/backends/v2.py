"""Backends: KServe v2 gRPC client, for our onnx and jax runners and Triton/MLServer/KServe.

Tensors travel as raw contents both ways (protocol/v2_grpc.py). One grpc.aio channel per
runner, reused by every call.
"""

from __future__ import annotations

import dataclasses

import grpc

from gateway.backends.base import ChannelBackend, map_rpc_error, timeout_for
from gateway.errors import BadRequest, GatewayError
from gateway.protocol import v2_grpc
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import V2Stub
from gateway.tensors import InferRequest, InferResponse


class V2Backend(ChannelBackend):
    """Forwards to `remote_model` on a v2 gRPC server at `endpoint`."""

    protocol = "v2"

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = V2Stub(channel)

    async def infer(self, request: InferRequest, *, deadline: float) -> InferResponse:
        msg = v2_grpc.request_to_pb(dataclasses.replace(request, model_name=self.remote_model))
        try:
            reply = await self._stub.ModelInfer(
                msg, timeout=timeout_for(self.name, deadline, self._clock)
            )
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(self.name, exc) from None
        try:
            return v2_grpc.response_from_pb(reply)
        except BadRequest as exc:
            raise GatewayError(
                f"variant '{self.name}' answered a malformed response: {exc}"
            ) from None

    async def ready(self) -> bool:
        try:
            reply = await self._stub.ModelReady(
                pb.ModelReadyRequest(name=self.remote_model), timeout=2.0
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.ready)

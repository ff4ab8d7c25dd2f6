"""Protocol: the `inference.GRPCInferenceService` method table, shared by every v2 speaker.

The messages live under `servegate.v2` (see v2.proto for why); the service path that
travels on the wire is the standard one. The gateway's front end, its v2 backend client
and our runners all register or call methods from this one table.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from gateway.errors import BadRequest
from gateway.protocol.grpc_errors import guarded
from gateway.protocol.pb import v2_pb2 as pb

SERVICE = "inference.GRPCInferenceService"

METHODS: Mapping[str, tuple[type[Message], type[Message]]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "ModelConfig": (pb.ModelConfigRequest, pb.ModelConfigResponse),
    "ModelStatistics": (pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
}

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]


def parse(cls: type[Message], data: bytes) -> Any:
    """A request message from its bytes; BadRequest (INVALID_ARGUMENT) when undecodable."""
    try:
        return cls.FromString(data)
    except DecodeError:
        raise BadRequest(f"undecodable {cls.DESCRIPTOR.name} message") from None


def _parsing(cls: type[Message], fn: Handler) -> Handler:
    async def call(data: bytes, context: grpc.aio.ServicerContext) -> Message:
        return await fn(parse(cls, data), context)

    return call


def generic_handler(
    handlers: Mapping[str, Handler],
    log: logging.Logger,
    *,
    raw: Collection[str] = (),
) -> grpc.GenericRpcHandler:
    """A grpc.aio handler serving `handlers` (method name -> coroutine) under SERVICE.

    Requests arrive as bytes and are parsed inside the error mapping (grpc_errors.guarded),
    so an undecodable message is INVALID_ARGUMENT, never INTERNAL; the methods named in
    `raw` get the bytes themselves (to look at their size before decoding them).
    """
    unknown = set(handlers) - set(METHODS)
    if unknown:
        raise ValueError(f"not v2 methods: {sorted(unknown)}")
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(
                guarded(fn if name in raw else _parsing(METHODS[name][0], fn), name, log),
                response_serializer=METHODS[name][1].SerializeToString,
            )
            for name, fn in handlers.items()
        },
    )


class V2Stub:
    """Client callables for every v2 method on one channel, e.g. `stub.ModelInfer(req)`."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        for name, (req, resp) in METHODS.items():
            setattr(
                self,
                name,
                channel.unary_unary(
                    f"/{SERVICE}/{name}",
                    request_serializer=req.SerializeToString,
                    response_deserializer=resp.FromString,
                ),
            )

    def __getattr__(self, name: str) -> grpc.aio.UnaryUnaryMultiCallable:
        raise AttributeError(name)

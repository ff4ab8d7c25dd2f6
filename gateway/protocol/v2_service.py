"""Protocol: the `inference.GRPCInferenceService` method table, shared by every v2 speaker.

The messages live under `servegate.v2` (see v2.proto for why); the service path that
travels on the wire is the standard one. The gateway's front end, its v2 backend client
and our runners all register or call methods from this one table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import Message

from gateway.protocol.pb import v2_pb2 as pb

SERVICE = "inference.GRPCInferenceService"

METHODS: Mapping[str, tuple[type[Message], type[Message]]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
}

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]


def generic_handler(handlers: Mapping[str, Handler]) -> grpc.GenericRpcHandler:
    """A grpc.aio handler serving `handlers` (method name -> coroutine) under SERVICE."""
    unknown = set(handlers) - set(METHODS)
    if unknown:
        raise ValueError(f"not v2 methods: {sorted(unknown)}")
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=METHODS[name][0].FromString,
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

"""API: the grpc.aio `inference.GRPCInferenceService` front end over the DataPlane.

Each method translates protobufs to the DataPlane's terms and back; errors become status
codes in the one mapping every servicer shares (protocol/grpc_errors.py). ModelInfer
takes the message as bytes: admission sees its size before anything decodes it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway.api import grpc_context as ctxs
from gateway.dataplane import DataPlane
from gateway.errors import BadRequest, GatewayError
from gateway.lifecycle import RepositoryControl
from gateway.protocol import v2_grpc
from gateway.protocol.grpc_errors import internal
from gateway.protocol.model_config import to_pb as model_config_pb
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import SERVICE, generic_handler
from gateway.router.selection import PIN_HEADER

log = logging.getLogger(__name__)

Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]


def _tensor_meta(specs: list[dict[str, Any]]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(
            name=s["name"], datatype=s["datatype"], shape=s["shape"]
        )
        for s in specs
    ]


def _repository_parameters(params: Mapping[str, pb.ModelRepositoryParameter]) -> None:
    unsupported = sorted(set(params) - {"unload_dependents"})
    if unsupported:
        raise BadRequest(
            f"parameters {unsupported} are not supported: load reads model.yaml and the "
            "version folders from the repository; change them there"
        )


def stream_servicer(dataplane: DataPlane) -> grpc.GenericRpcHandler:
    """ModelStreamInfer: Triton's bidirectional stream, one answer per request, in order;
    a request that fails answers its error in the stream, which goes on."""

    async def model_stream_infer(
        requests: AsyncIterator[bytes], ctx: grpc.aio.ServicerContext
    ) -> AsyncIterator[Message]:
        async for data in requests:
            try:
                request = v2_grpc.request_from_bytes(data)
                response = await dataplane.infer(
                    request, pin=ctxs.pin(ctx), protocol="grpc", headers=ctxs.headers(ctx)
                )
                yield pb.ModelStreamInferResponse(infer_response=v2_grpc.response_to_pb(response))
            except GatewayError as exc:
                yield pb.ModelStreamInferResponse(error_message=exc.message)
            except Exception:
                yield pb.ModelStreamInferResponse(error_message=internal(log, "stream").message)

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
                model_stream_infer,
                response_serializer=pb.ModelStreamInferResponse.SerializeToString,
            )
        },
    )


def servicer(
    dataplane: DataPlane, lifecycle: RepositoryControl | None = None
) -> grpc.GenericRpcHandler:
    """The v2 gRPC service handler for `dataplane` (with the repository extension when a
    `lifecycle` is given)."""

    async def server_live(_: pb.ServerLiveRequest, __: grpc.aio.ServicerContext) -> Message:
        return pb.ServerLiveResponse(live=dataplane.server_live())

    async def server_ready(_: pb.ServerReadyRequest, __: grpc.aio.ServicerContext) -> Message:
        return pb.ServerReadyResponse(ready=await dataplane.server_ready())

    async def model_ready(req: pb.ModelReadyRequest, ctx: grpc.aio.ServicerContext) -> Message:
        return pb.ModelReadyResponse(
            ready=await dataplane.model_ready(req.name, req.version, ctxs.pin(ctx))
        )

    async def server_metadata(_: pb.ServerMetadataRequest, __: grpc.aio.ServicerContext) -> Message:
        meta = dataplane.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    async def model_metadata(
        req: pb.ModelMetadataRequest, ctx: grpc.aio.ServicerContext
    ) -> Message:
        meta = await dataplane.model_metadata(req.name, req.version, ctxs.pin(ctx))
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=_tensor_meta(meta["inputs"]),
            outputs=_tensor_meta(meta["outputs"]),
        )

    async def model_infer(data: bytes, ctx: grpc.aio.ServicerContext) -> Message:
        headers = ctxs.headers(ctx)  # read once: each read copies the call's metadata
        request_id = headers.get(ctxs.REQUEST_ID)
        if request_id is not None:
            await ctx.send_initial_metadata(((ctxs.REQUEST_ID, request_id),))
        ticket = dataplane.hold(len(data))
        try:
            request = v2_grpc.request_from_bytes(data)
            deadline = ctxs.deadline(ctx, dataplane.clock)
            response = await dataplane.infer(
                request, deadline=deadline, pin=headers.get(PIN_HEADER), protocol="grpc",
                ticket=ticket, headers=headers,
            )  # fmt: skip
        finally:
            ticket.release()
        return v2_grpc.response_to_pb(response)

    async def model_config(req: pb.ModelConfigRequest, ctx: grpc.aio.ServicerContext) -> Message:
        doc = dataplane.model_config(req.name, req.version, ctxs.pin(ctx))
        return pb.ModelConfigResponse(config=model_config_pb(doc))

    async def model_statistics(
        req: pb.ModelStatisticsRequest, __: grpc.aio.ServicerContext
    ) -> Message:
        reply = pb.ModelStatisticsResponse()
        json_format.ParseDict(
            {"model_stats": dataplane.model_statistics(req.name, req.version)}, reply
        )
        return reply

    async def repository_index(
        req: pb.RepositoryIndexRequest, __: grpc.aio.ServicerContext
    ) -> Message:
        assert lifecycle is not None
        reply = pb.RepositoryIndexResponse()
        for entry in await lifecycle.index(ready_only=req.ready):
            reply.models.add(**entry)
        return reply

    async def repository_load(
        req: pb.RepositoryModelLoadRequest, __: grpc.aio.ServicerContext
    ) -> Message:
        assert lifecycle is not None
        _repository_parameters(req.parameters)
        await lifecycle.load(req.model_name)
        return pb.RepositoryModelLoadResponse()

    async def repository_unload(
        req: pb.RepositoryModelUnloadRequest, __: grpc.aio.ServicerContext
    ) -> Message:
        assert lifecycle is not None
        _repository_parameters(req.parameters)
        await lifecycle.unload(req.model_name)
        return pb.RepositoryModelUnloadResponse()

    handlers: dict[str, Method] = {
        "ServerLive": server_live,
        "ServerReady": server_ready,
        "ModelReady": model_ready,
        "ServerMetadata": server_metadata,
        "ModelMetadata": model_metadata,
        "ModelInfer": model_infer,
        "ModelConfig": model_config,
        "ModelStatistics": model_statistics,
    }
    if lifecycle is not None:
        handlers |= {
            "RepositoryIndex": repository_index,
            "RepositoryModelLoad": repository_load,
            "RepositoryModelUnload": repository_unload,
        }
    return generic_handler(handlers, log, raw=("ModelInfer",))

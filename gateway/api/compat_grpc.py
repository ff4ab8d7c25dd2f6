"""API: TF Serving's PredictionService and ModelService, and TorchServe's InferenceAPIsService,
on the gateway's gRPC port, over the DataPlane.

Each method translates (protocol/compat_tfserving*.py, compat_torchserve.py) to the one
path every request takes: DataPlane.infer, with the caller's gRPC deadline, its pins
(`servegate-variant` metadata, the `model@variant` alias, TF Serving's version_label:
compat_targets.py) and an admission ticket taken on the message's size before it is
decoded. Errors become status codes in the one mapping every servicer shares
(protocol/grpc_errors.py): TF Serving's own where they differ (FAILED_PRECONDITION for
an unknown signature), nothing internal ever.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from gateway.api import grpc_context as ctxs
from gateway.api.compat_targets import model_status, one_pin
from gateway.dataplane import DataPlane
from gateway.errors import BadRequest
from gateway.protocol import compat_tfserving, compat_tfserving_meta, compat_torchserve
from gateway.protocol.grpc_errors import guarded
from gateway.protocol.pb import tfserving_pb2 as tfs
from gateway.protocol.pb import torchserve_pb2 as ts
from gateway.protocol.tfserving_service import MODEL_SERVICE, PREDICTION_SERVICE
from gateway.protocol.v2_service import parse
from gateway.tensors import InferRequest

log = logging.getLogger(__name__)

TORCHSERVE_SERVICE = ts.DESCRIPTOR.services_by_name["InferenceAPIsService"].full_name

Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]
# method name -> (coroutine, request type or None for the raw bytes, response type)
Table = Mapping[str, tuple[Method, type[Message] | None, type[Message]]]


def _version_pin(spec: tfs.ModelSpec) -> tuple[str, str | None]:
    """A ModelSpec's version (empty: the latest) and its version label (a variant pin)."""
    version = str(spec.version.value) if spec.HasField("version") else ""
    label = spec.version_label if spec.HasField("version_label") else None
    return version, label


def handlers(dataplane: DataPlane) -> tuple[grpc.GenericRpcHandler, ...]:
    """The TF Serving and TorchServe gRPC services for `dataplane`."""

    def deadline(context: grpc.aio.ServicerContext) -> float | None:
        return ctxs.deadline(context, dataplane.clock)

    async def predict(data: bytes, ctx: grpc.aio.ServicerContext) -> Message:
        ticket = dataplane.hold(len(data))
        try:
            request, label = compat_tfserving.request_from_predict(parse(tfs.PredictRequest, data))
            response = await dataplane.infer(
                request,
                deadline=deadline(ctx),
                pin=one_pin(ctxs.pin(ctx), label),
                protocol="grpc",
                ticket=ticket,
                headers=ctxs.headers(ctx),
            )
        finally:
            ticket.release()
        return compat_tfserving.predict_response(response, request.model_name)

    async def get_model_metadata(
        req: tfs.GetModelMetadataRequest, ctx: grpc.aio.ServicerContext
    ) -> Message:
        compat_tfserving_meta.check_metadata_fields(req.metadata_field)
        version, label = _version_pin(req.model_spec)
        target = dataplane.resolve(req.model_spec.name, version, one_pin(ctxs.pin(ctx), label))
        return compat_tfserving_meta.metadata_response(
            req.model_spec.name, target.version, target.model.signature
        )

    async def get_model_status(
        req: tfs.GetModelStatusRequest, ctx: grpc.aio.ServicerContext
    ) -> Message:
        version, label = _version_pin(req.model_spec)
        pin = one_pin(ctxs.pin(ctx), label)
        states = await model_status(dataplane, req.model_spec.name, version, pin)
        return compat_tfserving_meta.status_response(states)

    async def predictions(data: bytes, ctx: grpc.aio.ServicerContext) -> Message:
        ticket = dataplane.hold(len(data))
        try:
            msg = parse(ts.PredictionsRequest, data)
            if msg.HasField("sequence_id"):
                raise BadRequest("sequence_id (TorchServe's stateful sequences) is not supported")
            version = compat_torchserve.model_version(msg.model_version)
            pin = ctxs.pin(ctx)
            target = dataplane.resolve(msg.model_name, version, pin)
            decoded = compat_torchserve.decode_inputs(msg.input, target.model.signature)
            request = InferRequest(msg.model_name, decoded.inputs, model_version=version)
            response = await dataplane.infer(
                request, deadline=deadline(ctx), pin=pin, protocol="grpc", ticket=ticket,
                headers=ctxs.headers(ctx),
            )  # fmt: skip
        finally:
            ticket.release()
        body, _ = compat_torchserve.encode_answer(response, decoded)
        return ts.PredictionResponse(prediction=body)

    async def ping(_: empty_pb2.Empty, __: grpc.aio.ServicerContext) -> Message:
        return ts.TorchServeHealthResponse(
            health=compat_torchserve.health(await dataplane.server_ready())
        )

    return (
        _service(
            PREDICTION_SERVICE,
            {
                "Predict": (predict, None, tfs.PredictResponse),
                "GetModelMetadata": (
                    get_model_metadata,
                    tfs.GetModelMetadataRequest,
                    tfs.GetModelMetadataResponse,
                ),
            },
        ),
        _service(
            MODEL_SERVICE,
            {
                "GetModelStatus": (
                    get_model_status,
                    tfs.GetModelStatusRequest,
                    tfs.GetModelStatusResponse,
                )
            },
        ),
        _service(
            TORCHSERVE_SERVICE,
            {
                "Predictions": (predictions, None, ts.PredictionResponse),
                "Ping": (ping, empty_pb2.Empty, ts.TorchServeHealthResponse),
            },
        ),
    )


def _service(name: str, table: Table) -> grpc.GenericRpcHandler:
    """A handler serving `table` under `name`. Requests arrive as bytes and are parsed
    inside the error mapping, so an undecodable message is INVALID_ARGUMENT."""

    def parsing(cls: type[Message], fn: Method) -> Method:
        async def call(data: bytes, context: grpc.aio.ServicerContext) -> Message:
            return await fn(parse(cls, data), context)

        return call

    return grpc.method_handlers_generic_handler(
        name,
        {
            method: grpc.unary_unary_rpc_method_handler(
                guarded(fn if cls is None else parsing(cls, fn), f"{name}/{method}", log),
                response_serializer=reply.SerializeToString,
            )
            for method, (fn, cls, reply) in table.items()
        },
    )

"""tf runner: TF Serving's PredictionService and ModelService, on the official stubs.

Predict, GetModelMetadata and GetModelStatus behave as in `tensorflow_model_server`:
same messages (tensorflow_serving.apis), same method paths, same status codes and
messages for the errors a client can cause. Outputs go back in `tensor_content` (TF
Serving's AS_PROTO_CONTENT option; its default writes the typed `*_val` fields, and the
gateway reads both). Model calls run on worker threads so health checks never stall.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from gateway.protocol.grpc_errors import guarded
from runners.tensorflow.servables import Servable, Servables, ServingError, dtype_name

log = logging.getLogger("servegate.tf_runner")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


def _statused(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Answers ServingError with its code; anything else is INTERNAL with an error id
    (logged), through the one mapping every servicer shares (grpc_errors.guarded)."""

    @functools.wraps(fn)
    async def call(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        result: Resp = await guarded(functools.partial(fn, self), fn.__name__, log)(
            request, context
        )
        return result

    return call


def _check_inputs(servable: Servable, request: predict_pb2.PredictRequest) -> dict[str, Any]:
    """TF Serving's checks, in its words: the input names, then each input's dtype."""
    sig, _ = servable.signature(request.model_spec.signature_name)
    sent, expected = set(request.inputs), set(sig.inputs)
    if sent != expected:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}.",
        )
    for unknown in (o for o in request.output_filter if o not in sig.outputs):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"output tensor alias not found in signature: {unknown} Outputs expected to be "
            f"in the set {{{','.join(sorted(sig.outputs))}}}.",
        )
    inputs = {}
    for i, key in enumerate(sorted(sig.inputs)):
        tensor, want = request.inputs[key], sig.inputs[key].dtype
        if tensor.dtype != want:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Expects arg[{i}] to be {dtype_name(want)} but {dtype_name(tensor.dtype)} "
                "is provided",
            )
        try:
            inputs[key] = tf.make_ndarray(tensor)
        except (ValueError, TypeError) as exc:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{key}': {exc}") from None
    return inputs


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata over the loaded servables."""

    def __init__(self, servables: Servables, executor: ThreadPoolExecutor) -> None:
        self.servables = servables
        self._executor = executor

    @_statused
    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        servable = self.servables.find(request.model_spec)
        signature_name = request.model_spec.signature_name or "serving_default"
        loop = asyncio.get_running_loop()
        outputs = await loop.run_in_executor(
            self._executor, self._predict, servable, signature_name, request
        )
        reply = predict_pb2.PredictResponse()
        reply.model_spec.name = servable.name
        reply.model_spec.version.value = servable.version
        reply.model_spec.signature_name = signature_name
        for key, value in outputs.items():
            reply.outputs[key].CopyFrom(value)
        return reply

    @staticmethod
    def _predict(
        servable: Servable, signature_name: str, request: predict_pb2.PredictRequest
    ) -> dict[str, Any]:
        inputs = _check_inputs(servable, request)
        result = servable.run(signature_name, inputs)
        wanted = list(request.output_filter) or sorted(result)
        return {k: tf.make_tensor_proto(np.asarray(result[k])) for k in wanted}

    @_statused
    async def GetModelMetadata(
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.metadata_field:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported"
                )
        servable = self.servables.find(request.model_spec)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in servable.signature_defs.items():
            signatures.signature_def[key].CopyFrom(sig)
        reply = get_model_metadata_pb2.GetModelMetadataResponse()
        reply.model_spec.name = servable.name
        reply.model_spec.version.value = servable.version
        reply.metadata["signature_def"].Pack(signatures)
        return reply


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus: every loaded version is AVAILABLE (loading happens before serving)."""

    def __init__(self, servables: Servables) -> None:
        self.servables = servables

    @_statused
    async def GetModelStatus(
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        reply = get_model_status_pb2.GetModelStatusResponse()
        for servable in self.servables.versions(request.model_spec):
            status = reply.model_version_status.add()
            status.version = servable.version
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            status.status.SetInParent()  # error_code OK, as TF Serving writes it
        return reply


def add_services(server: grpc.aio.Server, servables: Servables) -> ThreadPoolExecutor:
    """Registers both services; returns the executor the model calls run on."""
    executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="predict")
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(servables, executor), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(servables), server)
    return executor

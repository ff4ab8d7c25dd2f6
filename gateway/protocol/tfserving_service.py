"""Protocol: TF Serving's gRPC method table (PredictionService, ModelService) and a stub.

The messages live under `servegate.tfs` (see tfserving.proto for why); the method paths
that travel on the wire are TF Serving's own, registered here by hand, so the gateway
reaches `tensorflow_model_server` (or our tf runner) without importing TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf.message import Message

from gateway.protocol.pb import tfserving_pb2 as pb

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"

# method name -> (service, request type, response type); only what the gateway calls.
METHODS: Mapping[str, tuple[str, type[Message], type[Message]]] = {
    "Predict": (PREDICTION_SERVICE, pb.PredictRequest, pb.PredictResponse),
    "GetModelMetadata": (
        PREDICTION_SERVICE,
        pb.GetModelMetadataRequest,
        pb.GetModelMetadataResponse,
    ),
    "GetModelStatus": (MODEL_SERVICE, pb.GetModelStatusRequest, pb.GetModelStatusResponse),
}

# The Any in GetModelMetadataResponse.metadata["signature_def"] names the official type.
SIGNATURE_DEF_FIELD = "signature_def"
SIGNATURE_DEF_MAP_URL = "type.googleapis.com/tensorflow.serving.SignatureDefMap"


def path(method: str) -> str:
    """The wire path of a method, e.g. `/tensorflow.serving.PredictionService/Predict`."""
    service = METHODS[method][0]
    return f"/{service}/{method}"


class TFServingStub:
    """Client callables on one channel: `stub.Predict`, `.GetModelMetadata`, `.GetModelStatus`."""

    Predict: grpc.aio.UnaryUnaryMultiCallable
    GetModelMetadata: grpc.aio.UnaryUnaryMultiCallable
    GetModelStatus: grpc.aio.UnaryUnaryMultiCallable

    def __init__(self, channel: grpc.aio.Channel) -> None:
        for name, (_, req, resp) in METHODS.items():
            setattr(
                self,
                name,
                channel.unary_unary(
                    path(name),
                    request_serializer=req.SerializeToString,
                    response_deserializer=resp.FromString,
                ),
            )


def pack_signature_defs(signatures: pb.SignatureDefMap) -> pb.GetModelMetadataResponse:
    """A metadata response whose Any carries the official SignatureDefMap type URL."""
    reply = pb.GetModelMetadataResponse()
    entry = reply.metadata[SIGNATURE_DEF_FIELD]
    entry.type_url = SIGNATURE_DEF_MAP_URL
    entry.value = signatures.SerializeToString(deterministic=True)  # stable map order
    return reply


def unpack_signature_defs(reply: pb.GetModelMetadataResponse) -> pb.SignatureDefMap:
    """The SignatureDefMap inside a metadata response, checked by its type URL.

    `Any.Unpack` would compare the URL with this file's message name, which differs
    from TF Serving's on purpose, so the bytes are parsed directly.
    """
    if SIGNATURE_DEF_FIELD not in reply.metadata:
        raise ValueError("metadata response has no 'signature_def' entry")
    entry = reply.metadata[SIGNATURE_DEF_FIELD]
    if entry.type_url.rsplit("/", 1)[-1] != "tensorflow.serving.SignatureDefMap":
        raise ValueError(f"metadata 'signature_def' holds {entry.type_url!r}")
    return pb.SignatureDefMap.FromString(entry.value)

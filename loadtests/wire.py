"""Load tests: request bodies and answer decoding for each protocol a load test speaks.

Pure functions over the gateway's own codecs (gateway/protocol, gateway/backends'
converters), so a load test sends exactly what a real client sends: v2 HTTP JSON, v2
HTTP with the binary tensor extension, v2 gRPC with raw contents, and, straight to the
runners, TorchServe's Predictions API (our tensor framing) and TF Serving's Predict.
Bodies are encoded once per distinct batch, before the clock starts, so the load
generator spends its CPU on requests rather than on encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from gateway.backends import tfserving
from gateway.protocol import torchserve_framing as framing
from gateway.protocol import v2_grpc, v2_http_client
from gateway.protocol.pb import tfserving_pb2, torchserve_pb2, v2_pb2
from gateway.protocol.tfserving_service import path as tfserving_path
from gateway.tensors import (
    DATATYPES,
    InferRequest,
    ParamValue,
    Tensor,
    decode_raw,
    encode_raw,
)

HTTP_PROTOCOLS = ("http-json", "http-binary")
PROTOCOLS = (*HTTP_PROTOCOLS, "grpc")
# The gRPC API each runner kind speaks (direct-to-runner targets); the gateway speaks v2.
WIRES = ("v2", "torchserve", "tfserving")

V2_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
TORCHSERVE_PREDICT_PATH = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"
TFSERVING_PREDICT_PATH = tfserving_path("Predict")

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class HttpBody:
    """One pre-encoded v2 HTTP infer body with its headers."""

    body: bytes
    headers: Mapping[str, str]


def _request(
    model: str,
    input_name: str,
    batch: np.ndarray,
    parameters: Mapping[str, ParamValue] | None = None,
) -> InferRequest:
    return InferRequest(
        model_name=model,
        inputs=(Tensor.from_numpy(input_name, batch),),
        parameters=dict(parameters or {}),
    )


def http_body(
    model: str,
    input_name: str,
    batch: np.ndarray,
    *,
    binary: bool,
    parameters: Mapping[str, ParamValue] | None = None,
) -> HttpBody:
    """`parameters`: request-level v2 parameters, e.g. {"timeout": microseconds}."""
    request = _request(model, input_name, batch, parameters)
    body, length = v2_http_client.encode_request(request, binary=binary)
    headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
    if length is not None:
        headers["Inference-Header-Content-Length"] = str(length)
    return HttpBody(body, headers)


def http_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def decode_http(body: bytes, header_length: str | None) -> Outputs:
    reply = v2_http_client.decode_response(body, int(header_length) if header_length else None)
    return {t.name: t.data for t in reply.outputs}


def v2_grpc_body(model: str, input_name: str, batch: np.ndarray) -> bytes:
    msg = v2_grpc.request_to_pb(_request(model, input_name, batch))
    return bytes(msg.SerializeToString())


def decode_v2_grpc(reply: bytes) -> Outputs:
    msg = v2_grpc.response_from_pb(v2_pb2.ModelInferResponse.FromString(reply))
    return {t.name: t.data for t in msg.outputs}


def torchserve_body(model: str, input_name: str, batch: np.ndarray) -> bytes:
    """PredictionsRequest with one tensor frame per input, as the gateway's backend sends."""
    t = Tensor.from_numpy(input_name, batch)
    msg = torchserve_pb2.PredictionsRequest(
        model_name=model,
        input={t.name: framing.frame(t.datatype, t.shape, encode_raw(t.datatype, t.data))},
    )
    return bytes(msg.SerializeToString())


def decode_torchserve(reply: bytes) -> Outputs:
    msg = torchserve_pb2.PredictionResponse.FromString(reply)
    out: Outputs = {}
    for name, (datatype, shape, raw) in framing.unbundle(msg.prediction).items():
        if datatype not in DATATYPES:
            raise ValueError(f"output {name!r} has unknown datatype {datatype}")
        out[name] = decode_raw(datatype, shape, raw)
    return out


def tfserving_body(model: str, input_name: str, batch: np.ndarray) -> bytes:
    msg = tfserving.request_to_pb(_request(model, input_name, batch), model)
    return bytes(msg.SerializeToString())


def decode_tfserving(reply: bytes) -> Outputs:
    msg = tfserving_pb2.PredictResponse.FromString(reply)
    return {name: tfserving.tensor_from_pb(name, t).data for name, t in msg.outputs.items()}


@dataclass(frozen=True)
class GrpcWire:
    """How to reach one gRPC inference API with pre-serialized bodies."""

    path: str
    encode: Callable[[str, str, np.ndarray], bytes]
    decode: Callable[[bytes], Outputs]


GRPC_WIRES: Mapping[str, GrpcWire] = {
    "v2": GrpcWire(V2_INFER_PATH, v2_grpc_body, decode_v2_grpc),
    "torchserve": GrpcWire(TORCHSERVE_PREDICT_PATH, torchserve_body, decode_torchserve),
    "tfserving": GrpcWire(TFSERVING_PREDICT_PATH, tfserving_body, decode_tfserving),
}

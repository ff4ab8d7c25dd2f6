"""Backends: TF Serving PredictionService client (tensorflow_model_server, or our tf runner).

Our own messages (protocol/pb/tfserving.proto), byte-compatible with the official
stubs, so this process never imports TensorFlow. Requests carry numeric tensors in
`tensor_content` and BYTES in `string_val`; replies are read in either form, since
TF Serving answers in the typed `*_val` fields by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np

from gateway.backends.base import ChannelBackend, map_rpc_error, timeout_for
from gateway.errors import BadRequest, GatewayError
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.protocol.tfserving_service import TFServingStub, unpack_signature_defs
from gateway.tensors import DATATYPES, InferRequest, InferResponse, Tensor, decode_raw, encode_raw

SIGNATURE = "serving_default"
PLATFORM = "tensorflow_savedmodel"

# v2 datatype <-> TensorFlow DataType
DTYPES: Mapping[str, int] = {
    "BOOL": pb.DT_BOOL,
    "UINT8": pb.DT_UINT8,
    "UINT16": pb.DT_UINT16,
    "UINT32": pb.DT_UINT32,
    "UINT64": pb.DT_UINT64,
    "INT8": pb.DT_INT8,
    "INT16": pb.DT_INT16,
    "INT32": pb.DT_INT32,
    "INT64": pb.DT_INT64,
    "FP16": pb.DT_HALF,
    "BF16": pb.DT_BFLOAT16,
    "FP32": pb.DT_FLOAT,
    "FP64": pb.DT_DOUBLE,
    "BYTES": pb.DT_STRING,
}
DATATYPE_OF: Mapping[int, str] = {v: k for k, v in DTYPES.items()}

# The typed field TensorFlow's AsProtoField writes for each v2 datatype.
_VALUES_FIELD: Mapping[str, str] = {
    "BOOL": "bool_val",
    "UINT8": "int_val",
    "UINT16": "int_val",
    "UINT32": "uint32_val",
    "UINT64": "uint64_val",
    "INT8": "int_val",
    "INT16": "int_val",
    "INT32": "int_val",
    "INT64": "int64_val",
    "FP16": "half_val",
    "BF16": "half_val",
    "FP32": "float_val",
    "FP64": "double_val",
    "BYTES": "string_val",
}


def tensor_to_pb(tensor: Tensor) -> pb.TensorProto:
    """A TensorProto as `tf.make_tensor_proto` writes it: tensor_content, or string_val."""
    proto = pb.TensorProto(
        dtype=DTYPES[tensor.datatype],  # type: ignore[arg-type]
        tensor_shape=pb.TensorShapeProto(
            dim=[pb.TensorShapeProto.Dim(size=d) for d in tensor.shape]
        ),
    )
    if tensor.datatype == "BYTES":
        proto.string_val.extend(tensor.data.reshape(-1).tolist())
    else:
        proto.tensor_content = encode_raw(tensor.datatype, tensor.data)
    return proto


def tensor_from_pb(name: str, proto: pb.TensorProto) -> Tensor:
    """A Tensor from either encoding; BadRequest for what TensorFlow itself would refuse."""
    datatype = DATATYPE_OF.get(proto.dtype)
    if datatype is None:
        raise BadRequest(f"tensor '{name}': unsupported TensorFlow dtype {proto.dtype}")
    if proto.tensor_shape.unknown_rank or any(d.size < 0 for d in proto.tensor_shape.dim):
        raise BadRequest(f"tensor '{name}': shape is not fully known")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if proto.tensor_content:
        try:
            return Tensor(name, datatype, decode_raw(datatype, shape, proto.tensor_content))
        except ValueError as exc:
            raise BadRequest(f"tensor '{name}': {exc}") from None
    return Tensor(name, datatype, _from_values(name, datatype, shape, proto))


def _from_values(name: str, datatype: str, shape: tuple[int, ...], proto: pb.TensorProto) -> Any:
    values = getattr(proto, _VALUES_FIELD[datatype])
    count = int(np.prod(shape, dtype=np.int64))
    dtype = DATATYPES[datatype].dtype
    if datatype == "BYTES":
        if len(values) != count:
            raise BadRequest(f"tensor '{name}': {len(values)} strings for shape {list(shape)}")
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    if datatype in ("FP16", "BF16"):  # half_val holds the 16-bit patterns
        flat = np.asarray(values, dtype=np.int32).astype(np.uint16).view(dtype)
    else:
        flat = np.asarray(values, dtype=dtype)
    # TensorFlow's own reading: no values is zeros, fewer values repeat the last one.
    if len(flat) == count:
        return flat.reshape(shape)
    if len(flat) == 0:
        return np.zeros(shape, dtype=dtype)
    if len(flat) < count:
        return np.pad(flat, (0, count - len(flat)), mode="edge").reshape(shape)
    raise BadRequest(f"tensor '{name}': {len(flat)} values for shape {list(shape)}")


def request_to_pb(request: InferRequest, model: str) -> pb.PredictRequest:
    """A PredictRequest for `model`'s serving_default signature (version pinned if given)."""
    msg = pb.PredictRequest(
        model_spec=pb.ModelSpec(name=model, signature_name=SIGNATURE),
        output_filter=[o.name for o in request.outputs],
    )
    if request.model_version:
        if not request.model_version.isdigit():
            raise BadRequest(f"TF Serving versions are numbers, got '{request.model_version}'")
        msg.model_spec.version.value = int(request.model_version)
    for t in request.inputs:
        msg.inputs[t.name].CopyFrom(tensor_to_pb(t))
    return msg


def response_from_pb(reply: pb.PredictResponse, request: InferRequest) -> InferResponse:
    """Outputs in the order the request asked for them, else by name."""
    names = [o.name for o in request.outputs] or sorted(reply.outputs)
    missing = [n for n in names if n not in reply.outputs]
    if missing:
        raise BadRequest(f"reply lacks outputs {missing}")
    spec = reply.model_spec
    return InferResponse(
        model_name=spec.name or request.model_name,
        model_version=str(spec.version.value) if spec.HasField("version") else "",
        id=request.id,
        outputs=tuple(tensor_from_pb(n, reply.outputs[n]) for n in names),
    )


def metadata_from_pb(reply: pb.GetModelMetadataResponse) -> dict[str, Any]:
    """The serving_default signature as v2 model metadata (name, versions, inputs, outputs)."""
    signature = unpack_signature_defs(reply).signature_def.get(SIGNATURE)
    if signature is None:
        raise ValueError(f"model has no '{SIGNATURE}' signature")

    def specs(infos: Mapping[str, pb.TensorInfo]) -> list[dict[str, Any]]:
        return [
            {
                "name": key,
                "datatype": DATATYPE_OF.get(info.dtype, f"DT_{info.dtype}"),
                "shape": [int(d.size) for d in info.tensor_shape.dim],
            }
            for key, info in sorted(infos.items())
        ]

    spec = reply.model_spec
    return {
        "name": spec.name,
        "versions": [str(spec.version.value)] if spec.HasField("version") else [],
        "platform": PLATFORM,
        "inputs": specs(signature.inputs),
        "outputs": specs(signature.outputs),
    }


class TFServingBackend(ChannelBackend):
    """Forwards to `remote_model` on a TF Serving PredictionService at `endpoint`."""

    protocol = "tfserving"

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self._stub = TFServingStub(channel)

    async def infer(self, request: InferRequest, *, deadline: float) -> InferResponse:
        msg = request_to_pb(request, self.remote_model)
        try:
            reply = await self._stub.Predict(
                msg, timeout=timeout_for(self.name, deadline, self._clock)
            )
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(self.name, exc) from None
        try:
            return response_from_pb(reply, request)
        except BadRequest as exc:
            raise GatewayError(
                f"variant '{self.name}' answered a malformed response: {exc}"
            ) from None

    async def ready(self) -> bool:
        """Some version AVAILABLE (ModelService); servers without it: metadata answers."""
        spec = pb.ModelSpec(name=self.remote_model)
        try:
            status = await self._stub.GetModelStatus(
                pb.GetModelStatusRequest(model_spec=spec), timeout=2.0
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                return False
            try:
                await self._metadata(timeout=2.0)
            except grpc.aio.AioRpcError:
                return False
            return True
        available = pb.ModelVersionStatus.AVAILABLE
        return any(v.state == available for v in status.model_version_status)

    async def metadata(self, *, timeout: float = 5.0) -> dict[str, Any]:
        """The runner's own view of the model's signature, as v2 model metadata."""
        try:
            reply = await self._metadata(timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(self.name, exc) from None
        try:
            return metadata_from_pb(reply)
        except ValueError as exc:
            raise GatewayError(f"variant '{self.name}': {exc}") from None

    async def _metadata(self, *, timeout: float) -> pb.GetModelMetadataResponse:
        req = pb.GetModelMetadataRequest(
            model_spec=pb.ModelSpec(name=self.remote_model), metadata_field=["signature_def"]
        )
        reply: pb.GetModelMetadataResponse = await self._stub.GetModelMetadata(req, timeout=timeout)
        return reply

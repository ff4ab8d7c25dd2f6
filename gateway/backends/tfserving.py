"""Backends: TF Serving PredictionService client (tensorflow_model_server, or our tf runner).

Our own messages (protocol/pb/tfserving.proto), byte-compatible with the official
stubs, so this process never imports TensorFlow. Requests carry numeric tensors in
`tensor_content` and BYTES in `string_val`; replies are read in either form, since
TF Serving answers in the typed `*_val` fields by default (protocol/tfserving_tensors.py
reads and writes TensorProtos for both this client and the TF Serving front end).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from gateway.backends.base import ChannelBackend, map_rpc_error, timeout_for
from gateway.errors import BadRequest, GatewayError
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.protocol.tfserving_service import TFServingStub, unpack_signature_defs
from gateway.protocol.tfserving_tensors import DATATYPE_OF, tensor_from_pb, tensor_to_pb
from gateway.tensors import InferRequest, InferResponse

SIGNATURE = "serving_default"
PLATFORM = "tensorflow_savedmodel"

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
        msg.inputs[t.name].CopyFrom(tensor_to_pb(t, typed=False))  # as make_tensor_proto
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

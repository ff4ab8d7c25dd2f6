"""Protocol: TF Serving's model status and metadata, from model.yaml, as messages and as JSON.

The same answers for gRPC (GetModelStatus, GetModelMetadata) and REST (`GET /v1/models/
{m}` and `.../metadata`), whose JSON is the messages' proto3 JSON as TF Serving writes
it (int64 as strings, enums by name, the doubled `signature_def` key of metadata). The
signature is the model.yaml signature under TF Serving's `serving_default` key; its
TensorInfo names are nominal (servegate has no graph), in the form TensorFlow gives a
Keras export's (`serving_default_<input>:0`, `StatefulPartitionedCall:<i>`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from gateway.config import Signature
from gateway.errors import BadRequest
from gateway.protocol.compat_tfserving import SIGNATURE, model_spec
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.protocol.tfserving_service import SIGNATURE_DEF_FIELD, pack_signature_defs
from gateway.protocol.tfserving_tensors import DTYPES

PREDICT_METHOD = "tensorflow/serving/predict"


def _json(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def signature_defs(signature: Signature) -> pb.SignatureDefMap:
    """The model's one signature as TF Serving's SignatureDefMap (`serving_default`)."""
    sigs = pb.SignatureDefMap()
    sig = sigs.signature_def[SIGNATURE]
    sig.method_name = PREDICT_METHOD
    for spec in signature.inputs:
        _info(sig.inputs[spec.name], f"serving_default_{spec.name}:0", spec.datatype, spec.shape)
    for i, spec in enumerate(signature.outputs):
        _info(sig.outputs[spec.name], f"StatefulPartitionedCall:{i}", spec.datatype, spec.shape)
    return sigs


def _info(info: pb.TensorInfo, name: str, datatype: str, shape: Sequence[int]) -> None:
    info.name = name
    info.dtype = DTYPES[datatype]  # type: ignore[assignment]
    info.tensor_shape.dim.extend(pb.TensorShapeProto.Dim(size=d) for d in shape)


def check_metadata_fields(fields: Iterable[str]) -> None:
    """TF Serving serves the `signature_def` metadata field only, and needs it asked for."""
    fields = list(fields)
    if not fields:
        raise BadRequest("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise BadRequest(f"Metadata field {field} is not supported")


def metadata_response(name: str, version: str, signature: Signature) -> pb.GetModelMetadataResponse:
    """GetModelMetadata's answer; the Any carries TF Serving's SignatureDefMap type URL."""
    reply = pack_signature_defs(signature_defs(signature))
    reply.model_spec.CopyFrom(model_spec(name, version, signature=""))
    return reply


def metadata_json(name: str, version: str, signature: Signature) -> dict[str, Any]:
    """`GET /v1/models/{m}[/versions/{v}]/metadata`, as TF Serving writes it."""
    return {
        "model_spec": _json(model_spec(name, version, signature="")),
        "metadata": {SIGNATURE_DEF_FIELD: _json(signature_defs(signature))},
    }


@dataclass(frozen=True, slots=True)
class VersionState:
    """One version's ModelVersionStatus: a State name, an ErrorCode name, a message."""

    version: str
    state: str
    error_code: str = "OK"
    error_message: str = ""


def version_states(
    versions: Iterable[str], *, ready: bool, runner_state: str | None, reason: str = ""
) -> list[VersionState]:
    """Each version's state, from its variant's readiness and its runner's supervised state.

    Ready: AVAILABLE. A runner starting or restarting: LOADING. One failed or stopped:
    END with UNAVAILABLE and the reason. Not ready otherwise (a runner that does not
    answer ready): UNKNOWN with UNAVAILABLE. Every version of a model follows its
    variant: a runner serves all the versions it has built.
    """
    if ready:
        state, code, message = "AVAILABLE", "OK", ""
    elif runner_state in ("STARTING", "RESTARTING"):
        state, code, message = "LOADING", "OK", ""
    elif runner_state in ("FAILED", "STOPPED"):
        state, code, message = "END", "UNAVAILABLE", reason or f"its runner is {runner_state}"
    else:
        state, code, message = "UNKNOWN", "UNAVAILABLE", reason or "its runner does not answer"
    return [VersionState(v, state, code, message) for v in versions]


def status_response(states: Iterable[VersionState]) -> pb.GetModelStatusResponse:
    """GetModelStatus's answer."""
    return pb.GetModelStatusResponse(
        model_version_status=[
            pb.ModelVersionStatus(
                version=int(s.version),
                state=pb.ModelVersionStatus.State.Value(s.state),
                status=pb.StatusProto(
                    error_code=pb.ErrorCode.Value(s.error_code), error_message=s.error_message
                ),
            )
            for s in states
        ]
    )


def status_json(states: Iterable[VersionState]) -> dict[str, Any]:
    """`GET /v1/models/{m}[/versions/{v}]`, as TF Serving writes it."""
    return _json(status_response(states))

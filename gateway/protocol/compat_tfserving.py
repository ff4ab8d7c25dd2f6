"""Protocol: TF Serving's Predict (REST JSON and gRPC) <-> InferRequest/InferResponse.

TF Serving's callers reach any variant of a model through these codecs; the DataPlane
does the rest as for v2. REST bodies come in two formats (TF Serving's api_rest.md):
row (`instances`: a list with one entry per batch row; with several inputs, each entry
an object of named values) answered as `{"predictions": ...}`, and columnar (`inputs`:
one tensor, or an object of named tensors) answered as `{"outputs": ...}`. The datatype
of each value is the signature's (the JSON carries none); BYTES values are strings or
`{"b64": ...}` objects, and BYTES outputs whose name ends in `_bytes` are answered as
`{"b64": ...}`. gRPC carries TensorProtos (tfserving_tensors.py). Every malformed
request raises BadRequest naming the tensor at fault, never another error.
"""

from __future__ import annotations

from typing import Any, Literal

import grpc

from gateway.config import Signature, TensorSpec
from gateway.errors import BadRequest, GatewayError
from gateway.protocol import nested_json
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.protocol.tfserving_tensors import MAX_FILL_BYTES, tensor_from_pb, tensor_to_pb
from gateway.tensors import InferRequest, InferResponse, RequestedOutput, Tensor

SIGNATURE = "serving_default"
"""The one signature every servegate model has: its model.yaml signature."""

Format = Literal["row", "columnar"]
BYTES_SUFFIX = "_bytes"


class SignatureNotFound(BadRequest):
    """A signature_name the model lacks: TF Serving answers FAILED_PRECONDITION (HTTP 400)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Unimplemented(GatewayError):
    """A TF Serving method servegate does not serve (classify, regress)."""

    http_status = 501
    grpc_code = grpc.StatusCode.UNIMPLEMENTED


def check_signature_name(name: str) -> None:
    """Only the default signature exists (empty means the default, as in TF Serving)."""
    if name not in ("", SIGNATURE):
        raise SignatureNotFound(f'Serving signature key "{name}" not found.')


# ---- REST ------------------------------------------------------------------------------


def decode_predict(
    body: bytes, signature: Signature, *, model_name: str, model_version: str = ""
) -> tuple[InferRequest, Format]:
    """A `:predict` body as an InferRequest, and the format to answer in."""
    doc, tokens = nested_json.loads(body)
    if type(doc) is not dict:
        raise BadRequest("JSON Value: the request body is not an object")
    signature_name = doc.get("signature_name", "")
    if type(signature_name) is not str:
        raise BadRequest("'signature_name' key must be a string value.")
    check_signature_name(signature_name)
    if "instances" in doc and "inputs" in doc:
        raise BadRequest("expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in doc:
        values, fmt = _rows(doc["instances"], signature.inputs), "row"
    elif "inputs" in doc:
        values, fmt = _columns(doc["inputs"], signature.inputs), "columnar"
    else:
        raise BadRequest("Missing 'inputs' or 'instances' key")
    inputs = tuple(
        Tensor(spec.name, spec.datatype, nested_json.decode(spec.name, spec.datatype, value,
                                                            nonfinite=tokens))
        for spec, value in zip(signature.inputs, values, strict=True)
    )  # fmt: skip
    request = InferRequest(model_name=model_name, model_version=model_version, inputs=inputs)
    return request, fmt  # type: ignore[return-value]


def _named(value: Any) -> bool:
    """An object of named values (a `{"b64": ...}` object is a value, not a name)."""
    return type(value) is dict and not nested_json.is_b64(value)


def _rows(instances: Any, specs: tuple[TensorSpec, ...]) -> list[Any]:
    """Row format: one list per input, of the instances' values (batch dim first)."""
    if type(instances) is not list:
        raise BadRequest("Expecting 'instances' to be a list/array")
    if not instances:
        raise BadRequest("No values in 'instances' array")
    names = [s.name for s in specs]
    if not _named(instances[0]):
        if len(specs) > 1:
            raise BadRequest(
                f"instances is a plain list, but expecting a list of objects as the model "
                f"takes several inputs {names}"
            )
        if any(_named(item) for item in instances):
            raise BadRequest("instances mixes objects and values")
        return [instances]
    columns: list[list[Any]] = [[] for _ in specs]
    for i, item in enumerate(instances):
        if not _named(item):
            raise BadRequest(f"Expecting object but got a value at item {i} of 'instances'")
        if set(item) != set(names):
            raise BadRequest(
                f"item {i} of 'instances' has keys {sorted(item)}, must be equal to {names}"
            )
        for column, name in zip(columns, names, strict=True):
            column.append(item[name])
    return columns


def _columns(inputs: Any, specs: tuple[TensorSpec, ...]) -> list[Any]:
    """Columnar format: the one input's tensor, or each named input's (others ignored,
    as TF Serving ignores them)."""
    if not _named(inputs):
        if len(specs) > 1:
            raise BadRequest(
                f"inputs is a plain value/list, but expecting an object as the model takes "
                f"several inputs {[s.name for s in specs]}"
            )
        return [inputs]
    missing = [s.name for s in specs if s.name not in inputs]
    if missing:
        raise BadRequest(f"Missing named input: {missing[0]} in 'inputs' object.")
    return [inputs[s.name] for s in specs]


def encode_predict(response: InferResponse, fmt: Format) -> bytes:
    """`{"predictions": ...}` (row) or `{"outputs": ...}` (columnar); one output is given
    bare, several by name."""
    outputs = response.outputs
    if not outputs:
        raise GatewayError("the model answered no outputs")
    values = {t.name: nested_json.encode(t, b64=t.name.endswith(BYTES_SUFFIX)) for t in outputs}
    tokens = nested_json.nonfinite(outputs)
    if fmt == "columnar":
        doc: Any = next(iter(values.values())) if len(values) == 1 else values
        return nested_json.dumps({"outputs": doc}, tokens=tokens)
    rows = {t.shape[0] if t.shape else -1 for t in outputs}
    if -1 in rows or len(rows) != 1:
        raise BadRequest(
            "the outputs do not share a batch dimension, so they cannot be answered in the "
            "row ('instances') format; use the columnar ('inputs') format"
        )
    (n,) = rows
    if len(values) == 1:
        predictions: Any = next(iter(values.values()))
    else:
        predictions = [{name: v[i] for name, v in values.items()} for i in range(n)]
    return nested_json.dumps({"predictions": predictions}, tokens=tokens)


# ---- gRPC ------------------------------------------------------------------------------


def request_from_predict(
    msg: pb.PredictRequest, *, max_fill_bytes: int = MAX_FILL_BYTES
) -> tuple[InferRequest, str | None]:
    """A PredictRequest as an InferRequest, and its version label (a variant pin)."""
    spec = msg.model_spec
    if not spec.name:
        raise BadRequest("Missing ModelSpec name")
    check_signature_name(spec.signature_name)
    version = str(spec.version.value) if spec.HasField("version") else ""
    label = spec.version_label if spec.HasField("version_label") else None
    inputs = tuple(
        tensor_from_pb(name, proto, max_fill_bytes=max_fill_bytes)
        for name, proto in sorted(msg.inputs.items())
    )
    if not inputs:
        raise BadRequest("PredictRequest has no inputs")
    outputs = tuple(RequestedOutput(name) for name in dict.fromkeys(msg.output_filter))
    request = InferRequest(spec.name, inputs, model_version=version, outputs=outputs)
    return request, label


def model_spec(name: str, version: str, *, signature: str = SIGNATURE) -> pb.ModelSpec:
    """The ModelSpec TF Serving echoes: the name, the version served, the signature."""
    spec = pb.ModelSpec(name=name, signature_name=signature)
    if version.isdigit():
        spec.version.value = int(version)
    return spec


def predict_response(response: InferResponse, name: str) -> pb.PredictResponse:
    """A PredictResponse with every output in its typed field, as TF Serving answers."""
    reply = pb.PredictResponse(model_spec=model_spec(name, response.model_version))
    for t in response.outputs:
        reply.outputs[t.name].CopyFrom(tensor_to_pb(t, typed=True))
    return reply

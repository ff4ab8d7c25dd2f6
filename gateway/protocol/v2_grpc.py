"""Protocol: ModelInfer protobufs <-> InferRequest / InferResponse, raw contents both ways.

One converter pair serves both directions of the gateway: api/grpc.py decodes client
requests and encodes answers; backends/v2.py encodes runner requests and decodes their
answers; runners use the same functions. Outgoing tensors always travel as
`raw_*_contents` (tritonclient reads outputs only from there); incoming ones may also
use the typed `contents` fields.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np

from gateway.errors import BadRequest
from gateway.protocol.classification import requested_output
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import parse
from gateway.tensors import (
    DATATYPES,
    OBJECT_ITEMSIZE,
    InferRequest,
    InferResponse,
    ParamValue,
    Tensor,
    as_bytes_array,
    checked_count,
    decode_raw,
    element_count,
    encode_raw,
)

_INT64_MAX = 2**63 - 1


def params_from_pb(params: Mapping[str, pb.InferParameter]) -> dict[str, ParamValue]:
    out: dict[str, ParamValue] = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(p, which)
    return out


def params_to_pb(params: Mapping[str, ParamValue], into: MutableMapping[str, Any]) -> None:
    """Writes bool/int/str params (the three every v2 proto has); floats as double_param,
    ints past int64 (a client's uint64_param, or JSON up to 2**64 - 1) as uint64_param."""
    for key, value in params.items():
        p = into[key]
        if isinstance(value, bool):
            p.bool_param = value
        elif isinstance(value, int) and value > _INT64_MAX:
            p.uint64_param = value
        elif isinstance(value, int):
            p.int64_param = value
        elif isinstance(value, float):
            p.double_param = value
        else:
            p.string_param = str(value)


def _tensor_from_pb(
    name: str,
    datatype: str,
    shape: Sequence[int],
    contents: pb.InferTensorContents | None,
    raw: bytes | None,
    params: Mapping[str, pb.InferParameter],
) -> Tensor:
    if datatype not in DATATYPES:
        raise BadRequest(f"tensor '{name}': unknown datatype {_brief(datatype)}")
    shp = tuple(shape)
    try:
        # Before any allocation: typed contents are counted against this, raw bytes
        # sized by it, and a shape like [2**40, 2**40] must not reach numpy.
        checked_count(shp, DATATYPES[datatype].itemsize or OBJECT_ITEMSIZE)
        if raw is not None:
            data = decode_raw(datatype, shp, raw)
        else:
            data = _from_contents(datatype, shp, contents)
    except ValueError as exc:  # our own messages: sizes and counts, never internals
        raise BadRequest(f"tensor '{name}': {exc}") from None
    return Tensor(name, datatype, data, params_from_pb(params) if params else {})


def _brief(text: str) -> str:
    """A client's string for an error message, cut short: messages echo, never flood."""
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


def _from_contents(
    datatype: str, shape: tuple[int, ...], contents: pb.InferTensorContents | None
) -> np.ndarray:
    """Typed contents; the proto's field types already fix each value's JSON-like type,
    so only the count and, for the narrower ints (INT8 in int_contents), the range remain."""
    dt = DATATYPES[datatype]
    if dt.contents_field is None:
        raise ValueError(f"{datatype} must be sent in raw_input_contents")
    values = getattr(contents, dt.contents_field) if contents is not None else []
    if len(values) != element_count(shape):
        raise ValueError(
            f"{len(values)} values in contents for shape {list(shape)} "
            f"({element_count(shape)} elements)"
        )
    if datatype == "BYTES":
        return as_bytes_array(np.array(list(values), dtype=object)).reshape(shape)
    try:
        return np.asarray(values, dtype=dt.dtype).reshape(shape)
    except OverflowError:  # numpy refuses 300 for INT8 rather than wrap it
        raise ValueError(f"a value in contents is outside the {datatype} range") from None


def request_from_pb(msg: pb.ModelInferRequest) -> InferRequest:
    """Decodes a client's (or the gateway's) ModelInferRequest; malformed -> BadRequest."""
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} inputs")
    inputs = []
    for i, t in enumerate(msg.inputs):
        if raw and t.HasField("contents"):
            raise BadRequest(
                f"tensor '{t.name}': contents must be empty when raw_input_contents is used"
            )
        inputs.append(
            _tensor_from_pb(
                t.name,
                t.datatype,
                t.shape,
                t.contents if t.HasField("contents") else None,
                raw[i] if raw else None,
                t.parameters,
            )
        )
    outputs = [requested_output(o.name, params_from_pb(o.parameters)) for o in msg.outputs]
    return InferRequest(
        model_name=msg.model_name,
        model_version=msg.model_version,
        id=msg.id,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        parameters=params_from_pb(msg.parameters),
    )


def request_from_bytes(data: bytes) -> InferRequest:
    """A ModelInferRequest off the wire: undecodable bytes are a BadRequest too.

    For a front end that takes raw bytes (an identity deserializer), so that a garbled
    message is INVALID_ARGUMENT rather than grpc's own INTERNAL for a failed deserializer.
    """
    return request_from_pb(parse(pb.ModelInferRequest, data))


def request_to_pb(req: InferRequest) -> pb.ModelInferRequest:
    """Encodes with raw_input_contents: binary on the wire, never lists of numbers."""
    msg = pb.ModelInferRequest(
        model_name=req.model_name, model_version=req.model_version, id=req.id
    )
    params_to_pb(req.parameters, msg.parameters)
    for t in req.inputs:
        msg.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        msg.raw_input_contents.append(encode_raw(t.datatype, t.data))
    for o in req.outputs:
        msg.outputs.add(name=o.name)
    return msg


def response_to_pb(resp: InferResponse) -> pb.ModelInferResponse:
    msg = pb.ModelInferResponse(
        model_name=resp.model_name, model_version=resp.model_version, id=resp.id
    )
    params_to_pb(resp.parameters, msg.parameters)
    for t in resp.outputs:
        msg.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        msg.raw_output_contents.append(encode_raw(t.datatype, t.data))
    return msg


def response_from_pb(msg: pb.ModelInferResponse) -> InferResponse:
    """Decodes a runner's answer; raw or typed contents. A malformed one -> BadRequest."""
    raw = msg.raw_output_contents
    if raw and len(raw) != len(msg.outputs):
        raise BadRequest(f"raw_output_contents has {len(raw)} entries for {len(msg.outputs)}")
    outputs = tuple(
        _tensor_from_pb(
            t.name,
            t.datatype,
            t.shape,
            t.contents if t.HasField("contents") else None,
            raw[i] if raw else None,
            t.parameters,
        )
        for i, t in enumerate(msg.outputs)
    )
    return InferResponse(
        model_name=msg.model_name,
        model_version=msg.model_version,
        id=msg.id,
        outputs=outputs,
        parameters=params_from_pb(msg.parameters),
    )

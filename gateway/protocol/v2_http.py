"""Protocol: v2 HTTP bodies (JSON and the binary tensor extension) <-> InferRequest/Response.

Pure functions, no I/O. Binary inputs become `numpy.frombuffer` views of the body, never
Python lists; JSON goes through orjson and json_tensors.py. Anything malformed, whatever
JSON sits in whatever field, raises BadRequest naming the tensor at fault, never another
error. See ../shared/notes/PROTOCOL.md §3 for the extension's rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import BadRequest
from gateway.protocol import json_tensors
from gateway.protocol.classification import requested_output
from gateway.tensors import (
    DATATYPES,
    OBJECT_ITEMSIZE,
    InferRequest,
    InferResponse,
    ParamValue,
    RequestedOutput,
    Tensor,
    checked_count,
    decode_raw,
    encode_raw,
)

HEADER_LENGTH = "inference-header-content-length"


# Triton's binary extension parameters; each has one JSON type.
_BOOL_PARAMS = ("binary_data", "binary_data_output")
# InferParameter's int64_param or uint64_param: the integers a parameter can carry on to a runner.
_INT_RANGE = (-(2**63), 2**64 - 1)


def _params(value: Any, where: str) -> dict[str, ParamValue]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: parameters must be an object of string/number/bool values")
    for key, v in value.items():
        if not isinstance(v, bool | int | float | str):
            raise BadRequest(f"{where}: parameter '{key}' must be a string, number or bool")
        if key in _BOOL_PARAMS and not isinstance(v, bool):
            raise BadRequest(f"{where}: parameter '{key}' must be a boolean")
        if type(v) is int and not _INT_RANGE[0] <= v <= _INT_RANGE[1]:
            raise BadRequest(f"{where}: parameter '{key}' is outside the 64-bit integer range")
    return value


def _shape(value: Any, name: str, datatype: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(d) is int and d >= 0 for d in value):
        raise BadRequest(f"input '{name}': shape must be a list of non-negative integers")
    try:
        checked_count(value, DATATYPES[datatype].itemsize or OBJECT_ITEMSIZE)
    except ValueError as exc:
        raise BadRequest(f"input '{name}': {exc}") from None
    return tuple(value)


def loads_object(body: bytes) -> dict[str, Any]:
    """A JSON object body; BadRequest for malformed JSON or any other JSON value."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON in request body: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    return doc


def decode_request(
    body: bytes, header_length: int | None, *, model_name: str, model_version: str = ""
) -> InferRequest:
    """Decodes a JSON body, or a JSON header plus binary blobs when `header_length` is set.

    Any JSON in any field gives an InferRequest or BadRequest, never another error. The
    raw-binary form (`header_length == 0`) needs the model's signature and is handled
    by `decode_raw_request`.
    """
    if header_length is None:
        header_length = len(body)
    if header_length < 0 or header_length > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {header_length} is outside the body "
            f"({len(body)} bytes)"
        )
    header = body[:header_length]
    doc = loads_object(header)
    # No `true`/`false` anywhere in the text: no JSON boolean can hide among the numbers.
    bools_possible = b"true" in header or b"false" in header
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("request must have a non-empty 'inputs' list")

    blob = memoryview(body)[header_length:]
    offset = 0
    inputs: list[Tensor] = []
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"inputs[{i}] must be an object with a string 'name'")
        name = item["name"]
        datatype = item.get("datatype")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise BadRequest(f"input '{name}': unknown datatype {_brief(datatype)}")
        shape = _shape(item.get("shape"), name, datatype)
        params = _params(item.get("parameters"), f"input '{name}'")
        size = params.pop("binary_data_size", None)
        if size is not None:
            if type(size) is not int or size < 0:
                raise BadRequest(f"input '{name}': binary_data_size must be a non-negative int")
            if size > len(blob) - offset:
                raise BadRequest(
                    f"input '{name}': binary_data_size {size} runs past the end of the body "
                    f"({len(blob) - offset} bytes left)"
                )
            try:
                data = decode_raw(datatype, shape, blob[offset : offset + size])
            except ValueError as exc:
                raise BadRequest(f"input '{name}': {exc}") from None
            offset += size
        else:
            if "data" not in item:
                raise BadRequest(f"input '{name}': needs 'data' or a binary_data_size parameter")
            data = json_tensors.decode(
                name, datatype, shape, item["data"], bools_possible=bools_possible
            )
        inputs.append(Tensor(name, datatype, data, params))
    if offset != len(blob):
        raise BadRequest(f"body has {len(blob) - offset} bytes of binary data that no input claims")
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        id=_request_id(doc.get("id")),
        inputs=tuple(inputs),
        outputs=_requested_outputs(doc.get("outputs")),
        parameters=_params(doc.get("parameters"), "request"),
    )


def _brief(value: Any) -> str:
    """A client's value for an error message: scalars cut short, containers by kind only
    (a repr of 1000-deep lists would recurse, of a 60 MB list would flood)."""
    if isinstance(value, list | dict):
        return f"(a JSON {'array' if isinstance(value, list) else 'object'})"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def decode_raw_request(
    body: bytes,
    *,
    name: str,
    datatype: str,
    shape: tuple[int, ...],
    model_name: str,
    model_version: str = "",
) -> InferRequest:
    """`Inference-Header-Content-Length: 0`: the whole body is the model's one input.

    Its one free (-1) dim, if any, is whatever the body's length makes it (1 for a
    single image); every output comes back binary.
    """
    fixed = 1
    for d in shape:
        fixed *= 1 if d == -1 else d
    row_bytes = fixed * DATATYPES[datatype].itemsize
    if -1 in shape:
        if row_bytes == 0 or len(body) % row_bytes:
            raise BadRequest(
                f"input '{name}': a raw body of {len(body)} bytes is not a whole number of "
                f"{list(shape)} {datatype} rows ({row_bytes} bytes each)"
            )
        shape = tuple(len(body) // row_bytes if d == -1 else d for d in shape)
    try:
        data = decode_raw(datatype, shape, body)
    except ValueError as exc:
        raise BadRequest(f"input '{name}': {exc}") from None
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=(Tensor(name, datatype, data),),
        parameters={"binary_data_output": True},
    )


def _request_id(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest("'id' must be a string")
    return value


def _requested_outputs(value: Any) -> tuple[RequestedOutput, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadRequest("'outputs' must be a list")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"outputs[{i}] must be an object with a string 'name'")
        params = _params(item.get("parameters"), f"output '{item['name']}'")
        out.append(requested_output(item["name"], params))
    return tuple(out)


@dataclass(frozen=True)
class BinaryOutputs:
    """Which outputs go binary: each output's own `binary_data` flag, else the request's
    `binary_data_output` default."""

    default: bool = False
    flags: Mapping[str, bool] = field(default_factory=dict)

    def __call__(self, name: str) -> bool:
        return self.flags.get(name, self.default)


def binary_outputs(request: InferRequest) -> BinaryOutputs:
    """The binary extension's choice of binary outputs for `request`."""
    return BinaryOutputs(
        bool(request.parameters.get("binary_data_output", False)),
        {o.name: o.binary for o in request.outputs if o.binary is not None},
    )


def encode_response(response: InferResponse, binary: BinaryOutputs) -> tuple[bytes, int | None]:
    """Returns (body, json header length or None when nothing is binary)."""
    blobs: list[bytes] = []
    outputs: list[dict[str, Any]] = []
    for t in response.outputs:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        params = dict(t.parameters)
        if binary(t.name):
            raw = encode_raw(t.datatype, t.data)
            params["binary_data_size"] = len(raw)
            blobs.append(raw)
        else:
            entry["data"] = json_tensors.encode(t)
        if params:
            entry["parameters"] = params
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        doc["model_version"] = response.model_version
    if response.id:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = dict(response.parameters)
    doc["outputs"] = outputs
    header = dumps(doc)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def dumps(doc: Any) -> bytes:
    """orjson with numpy support: the one JSON encoder of the HTTP front end."""
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)

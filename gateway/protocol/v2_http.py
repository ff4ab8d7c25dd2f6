"""Protocol: v2 HTTP bodies (JSON and the binary tensor extension) <-> InferRequest/Response.

Pure functions, no I/O. Binary inputs become `numpy.frombuffer` views of the body, never
Python lists; JSON goes through orjson. Anything malformed raises BadRequest naming the
tensor at fault. See ../shared/notes/PROTOCOL.md §3 for the extension's rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from gateway.errors import BadRequest
from gateway.tensors import (
    DATATYPES,
    InferRequest,
    InferResponse,
    ParamValue,
    RequestedOutput,
    Tensor,
    as_bytes_array,
    decode_raw,
    element_count,
    encode_raw,
)

HEADER_LENGTH = "inference-header-content-length"


def _params(value: Any, where: str) -> dict[str, ParamValue]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, bool | int | float | str) for v in value.values()
    ):
        raise BadRequest(f"{where}: parameters must be an object of string/number/bool values")
    return value


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise BadRequest(f"input '{name}': shape must be a list of non-negative integers")
    return tuple(value)


def json_data(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    """A JSON `data` list as a numpy array of `shape`; BadRequest when it does not fit."""
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': data must be a list")
    dt = DATATYPES[datatype]
    try:
        if datatype == "BYTES":
            arr = as_bytes_array(np.array(_flatten(data), dtype=object))
        else:
            arr = np.asarray(data, dtype=dt.dtype).reshape(-1)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(f"input '{name}': data is not valid {datatype}: {exc}") from None
    if arr.size != element_count(shape):
        raise BadRequest(
            f"input '{name}': {arr.size} elements in data for shape {list(shape)} "
            f"({element_count(shape)} elements)"
        )
    return arr.reshape(shape)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in data:
        if isinstance(v, list):
            out.extend(_flatten(v))
        elif isinstance(v, str | bytes):
            out.append(v)
        else:
            raise TypeError(f"BYTES elements must be strings, got {type(v).__name__}")
    return out


def decode_request(
    body: bytes, header_length: int | None, *, model_name: str, model_version: str = ""
) -> InferRequest:
    """Decodes a JSON body, or a JSON header plus binary blobs when `header_length` is set.

    The raw-binary form (`header_length == 0`) needs the model's signature and is handled
    by `decode_raw_request`.
    """
    if header_length is None:
        header_length = len(body)
    if header_length < 0 or header_length > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {header_length} is outside the body "
            f"({len(body)} bytes)"
        )
    try:
        doc = orjson.loads(body[:header_length])
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON in request body: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
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
        if datatype not in DATATYPES:
            raise BadRequest(f"input '{name}': unknown datatype {datatype!r}")
        shape = _shape(item.get("shape"), name)
        params = _params(item.get("parameters"), f"input '{name}'")
        size = params.pop("binary_data_size", None)
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise BadRequest(f"input '{name}': binary_data_size must be a non-negative int")
            if offset + size > len(blob):
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
            data = json_data(name, datatype, shape, item["data"])
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
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise BadRequest(f"output '{item['name']}': binary_data must be a boolean")
        out.append(RequestedOutput(item["name"], binary))
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
            entry["data"] = json_values(t)
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


def json_values(t: Tensor) -> Any:
    """A tensor's elements as JSON carries them (floats for FP16/BF16, text for BYTES)."""
    flat = t.data.reshape(-1)
    if t.datatype == "BYTES":
        return [v.decode("utf-8", errors="replace") for v in flat.tolist()]
    if t.datatype in ("FP16", "BF16"):
        return flat.astype(np.float32)
    return np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("="))


def dumps(doc: Any) -> bytes:
    """orjson with numpy support: the one JSON encoder of the HTTP front end."""
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)

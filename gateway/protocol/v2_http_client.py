"""Protocol: the client's side of v2 HTTP: request bodies out, answers in.

Used by gateway/client.py (`servegate infer`) and the load tests; the same codecs as the
server side (v2_http.py), so a round trip through both is exact.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.protocol import json_tensors, v2_http
from gateway.tensors import InferRequest, InferResponse, Tensor, decode_raw, encode_raw


def encode_request(request: InferRequest, *, binary: bool) -> tuple[bytes, int | None]:
    """A client's body: inputs as JSON data, or as binary blobs after a JSON header.

    Outputs come back binary when `binary` is set. Returns (body, header length or None).
    """
    inputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for t in request.inputs:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if binary:
            raw = encode_raw(t.datatype, t.data)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = json_tensors.encode(t)
        inputs.append(entry)
    doc: dict[str, Any] = {"inputs": inputs}
    if request.id:
        doc["id"] = request.id
    params = dict(request.parameters)
    if binary:
        params["binary_data_output"] = True
    if params:
        doc["parameters"] = params
    if request.outputs:
        doc["outputs"] = [
            {
                "name": o.name,
                **({"parameters": {"binary_data": o.binary}} if o.binary is not None else {}),
            }
            for o in request.outputs
        ]
    header = v2_http.dumps(doc)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def decode_response(body: bytes, header_length: int | None) -> InferResponse:
    """A client's view of an infer answer (JSON, or JSON header plus binary outputs)."""
    if header_length is None:
        header_length = len(body)
    doc = orjson.loads(body[:header_length])
    blob = memoryview(body)[header_length:]
    offset = 0
    outputs = []
    for item in doc["outputs"]:
        shape = tuple(item["shape"])
        params = dict(item.get("parameters") or {})
        size = params.pop("binary_data_size", None)
        if size is not None:
            data = decode_raw(item["datatype"], shape, blob[offset : offset + size])
            offset += size
        else:
            data = json_tensors.decode(item["name"], item["datatype"], shape, item["data"])
        outputs.append(Tensor(item["name"], item["datatype"], data, params))
    return InferResponse(
        model_name=doc.get("model_name", ""),
        model_version=doc.get("model_version", ""),
        id=doc.get("id", ""),
        outputs=tuple(outputs),
        parameters=doc.get("parameters") or {},
    )

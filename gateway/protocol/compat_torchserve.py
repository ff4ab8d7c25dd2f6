"""Protocol: TorchServe-style prediction bodies <-> tensors (REST `/predictions/{m}`, and
gRPC `InferenceAPIsService.Predictions` with its `input` map<string, bytes>).

TorchServe passes a body to the model's handler as it came, so what a caller sends is
whatever that handler reads. For servegate's models (a signature, no handler) the
bodies a TorchServe user would send are accepted and mapped as follows:

- JSON (Content-Type `application/json`, or a body that parses as a JSON object or
  array): an object of named inputs; a bare tensor (nested list) of a single-input
  model; either one wrapped as `{"data": ...}` or `{"body": ...}`, the keys TorchServe's
  base handlers read. A tensor one dimension short of the signature is one instance:
  the batch dimension is added, and dropped again from the answer. BYTES values are
  strings or `{"b64": ...}` objects. The answer is JSON: the one output's tensor, or an
  object of named outputs.
- Raw bytes (`application/octet-stream`, or anything that is not JSON) of the one input
  of a single-input model: little-endian and row-major, as v2's raw binary request
  (at most one free dimension, sized by the body's length); for a BYTES input of shape
  [-1], the body is the one element. The answer is the one output's raw little-endian
  bytes (`application/octet-stream`), or JSON where the model has several outputs, a
  BYTES output, or the caller asks for JSON (REST `Accept: application/json`).
- gRPC: `input` holds the body under `data` or `body`, or one entry per input name,
  each value read as a body of that one input (JSON or raw, as above). `prediction` is
  the answer's bytes, JSON or raw by the same rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.config import Signature, TensorSpec
from gateway.errors import (
    BadRequest,
    DeadlineExceeded,
    Forbidden,
    GatewayError,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    Unavailable,
)
from gateway.protocol import nested_json, v2_http
from gateway.tensors import InferResponse, Tensor, encode_raw

DATA_KEYS = ("data", "body")
JSON_TYPE = "application/json"
RAW_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Decoded:
    """A body's input tensors, and how to answer it."""

    inputs: tuple[Tensor, ...]
    json: bool
    """The body was JSON: answer in JSON."""
    instance: bool = False
    """Every input came as one instance without its batch dim: the answer drops it too."""


def decode_body(body: bytes, signature: Signature, content_type: str | None = None) -> Decoded:
    """A REST body (or a gRPC `data` entry) as the model's input tensors."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media.startswith("multipart/"):
        raise BadRequest(
            "multipart/form-data bodies are not supported: send the input as the body "
            "(JSON, or application/octet-stream)"
        )
    doc = None
    if media != RAW_TYPE:
        doc = _json_doc(body, forced=media == JSON_TYPE or media.endswith("+json"))
    if doc is None:
        (spec,) = _one_input(signature, "a raw body")
        return Decoded((_raw(spec, body),), json=False)
    value, tokens = doc
    if type(value) is dict and len(value) == 1 and not nested_json.is_b64(value):
        (key,) = value
        if key in DATA_KEYS and signature.input(key) is None:
            value = value[key]
    if type(value) is dict and not nested_json.is_b64(value):
        return _named(value, signature, tokens)
    (spec,) = _one_input(signature, "a bare tensor")
    tensor, instance = _tensor(spec, value, tokens)
    return Decoded((tensor,), json=True, instance=instance)


def decode_inputs(entries: Mapping[str, bytes], signature: Signature) -> Decoded:
    """gRPC `input`: a body under `data`/`body`, or each input's own body by its name."""
    if not entries:
        raise BadRequest("the request has no input")
    if len(entries) == 1:
        ((key, body),) = entries.items()
        if key in DATA_KEYS and signature.input(key) is None:
            return decode_body(body, signature)
    names = [s.name for s in signature.inputs]
    unknown = [k for k in entries if signature.input(k) is None]
    if unknown:
        raise BadRequest(f"unknown input '{unknown[0]}' (the model takes {names})")
    missing = [n for n in names if n not in entries]
    if missing:
        raise BadRequest(f"missing inputs {missing}")
    tensors, json_seen, instances = [], False, []
    for spec in signature.inputs:
        doc = _json_doc(entries[spec.name], forced=False)
        if doc is None:
            tensors.append(_raw(spec, entries[spec.name]))
            instances.append(False)
        else:
            tensor, instance = _tensor(spec, doc[0], doc[1])
            tensors.append(tensor)
            instances.append(instance)
            json_seen = True
    return Decoded(tuple(tensors), json=json_seen, instance=all(instances))


def _json_doc(body: bytes, *, forced: bool) -> tuple[Any, bool] | None:
    """(document, NaN tokens used) when the body is JSON: always when `forced` (else a
    BadRequest), otherwise when it parses as a JSON object or array."""
    if forced:
        return nested_json.loads(body)
    if body.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        return nested_json.loads(body)
    except BadRequest:
        return None


def _one_input(signature: Signature, what: str) -> tuple[TensorSpec]:
    if len(signature.inputs) != 1:
        raise BadRequest(
            f"{what} is the input of a single-input model; this model takes "
            f"{[s.name for s in signature.inputs]}: send a JSON object of named inputs"
        )
    return (signature.inputs[0],)


def _named(doc: dict[str, Any], signature: Signature, tokens: bool) -> Decoded:
    names = [s.name for s in signature.inputs]
    unknown = [k for k in doc if signature.input(k) is None]
    if unknown:
        raise BadRequest(f"unknown input '{unknown[0]}' (the model takes {names})")
    missing = [n for n in names if n not in doc]
    if missing:
        raise BadRequest(f"missing inputs {missing}")
    decoded = [_tensor(spec, doc[spec.name], tokens) for spec in signature.inputs]
    return Decoded(tuple(t for t, _ in decoded), json=True, instance=all(one for _, one in decoded))


def _tensor(spec: TensorSpec, value: Any, tokens: bool) -> tuple[Tensor, bool]:
    """A JSON value of `spec`: a batch (the signature's rank) or one instance (one less)."""
    data = nested_json.decode(spec.name, spec.datatype, value, nonfinite=tokens)
    rank = len(spec.shape)
    if data.ndim == rank:
        return Tensor(spec.name, spec.datatype, data), False
    if data.ndim == rank - 1 and spec.shape[0] == -1:
        return Tensor(spec.name, spec.datatype, data[np.newaxis]), True
    one = f" (or one instance: {list(spec.shape[1:])})" if spec.shape[:1] == (-1,) else ""
    raise BadRequest(
        f"input '{spec.name}': a {data.ndim}-dimensional value; the model takes "
        f"{list(spec.shape)}{one}"
    )


def _raw(spec: TensorSpec, body: bytes) -> Tensor:
    """Raw bytes of one input: numeric rows (v2's raw binary rule), or one BYTES element."""
    if not body:
        raise BadRequest(f"input '{spec.name}': the body is empty")
    if spec.datatype == "BYTES":
        if spec.shape != (-1,):
            raise BadRequest(
                f"input '{spec.name}': a raw body is one element of a BYTES input of shape "
                f"[-1]; this one is {list(spec.shape)}: send JSON"
            )
        data = np.empty(1, dtype=object)
        data[0] = bytes(body)
        return Tensor(spec.name, "BYTES", data)
    if sum(d == -1 for d in spec.shape) > 1:
        raise BadRequest(
            f"input '{spec.name}': shape {list(spec.shape)} has several free dimensions, "
            "which a raw body cannot size: send JSON"
        )
    request = v2_http.decode_raw_request(
        body, name=spec.name, datatype=spec.datatype, shape=spec.shape, model_name=""
    )
    return request.inputs[0]


def encode_answer(
    response: InferResponse, decoded: Decoded, *, want_json: bool = False
) -> tuple[bytes, str]:
    """The answer's bytes and media type (see the module docstring for which)."""
    outputs = response.outputs
    if not outputs:
        raise GatewayError("the model answered no outputs")
    if not (decoded.json or want_json) and len(outputs) == 1 and outputs[0].datatype != "BYTES":
        return encode_raw(outputs[0].datatype, outputs[0].data), RAW_TYPE
    values = {}
    for t in outputs:
        value = nested_json.encode(t)
        if decoded.instance and t.data.ndim and t.shape[0] == 1:
            value = value[0]
        values[t.name] = value
    doc = next(iter(values.values())) if len(values) == 1 else values
    return nested_json.dumps(doc, tokens=nested_json.nonfinite(outputs)), JSON_TYPE


_TYPES: tuple[tuple[type[GatewayError], str], ...] = (
    (BadRequest, "BadRequestException"),
    (ModelNotFound, "ModelNotFoundException"),
    (Unauthorized, "InvalidKeyException"),
    (Forbidden, "InvalidKeyException"),
    (PayloadTooLarge, "BadRequestException"),
    (Overloaded, "ServiceUnavailableException"),
    (Unavailable, "ServiceUnavailableException"),
    (RequestTimeout, "RequestTimeoutException"),
    (DeadlineExceeded, "RequestTimeoutException"),
)


def error_doc(exc: GatewayError) -> dict[str, Any]:
    """TorchServe's error body: `{"code": <HTTP status>, "type": ..., "message": ...}`."""
    kind = next((name for cls, name in _TYPES if isinstance(exc, cls)), "InternalServerException")
    return {"code": exc.http_status, "type": kind, "message": exc.message}


def health(healthy: bool) -> str:
    """TorchServe's ping document, as its REST body and its gRPC `health` string."""
    return json.dumps({"status": "Healthy" if healthy else "Unhealthy"}, indent=2)


_VERSION = re.compile(r"(\d+)(?:\.0+)?")


def model_version(version: str) -> str:
    """A TorchServe version as a model.yaml one: `1.0` (torch-model-archiver's default
    style) is version `1`; anything else is looked up as given."""
    match = _VERSION.fullmatch(version)
    return match.group(1) if match else version

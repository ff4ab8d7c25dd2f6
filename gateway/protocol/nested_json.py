"""Protocol: tensors as bare nested JSON lists, for TF Serving's REST API and TorchServe-style
JSON bodies (compat_tfserving.py, compat_torchserve.py).

Unlike a v2 JSON tensor (json_tensors.py), these carry no shape and no datatype: the
shape is the nesting (`[[1, 2], [3, 4]]` is [2, 2], a bare number is a scalar) and the
datatype is the model signature's. BYTES elements are UTF-8 strings or TF Serving's
`{"b64": "..."}` objects. TF Serving reads and writes the `NaN`, `Infinity` and
`-Infinity` tokens that strict JSON lacks, so `loads` and `dumps` do too. Anything
malformed raises BadRequest naming the tensor, never another error.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
import orjson

from gateway.errors import BadRequest
from gateway.protocol import json_tensors
from gateway.tensors import DATATYPES, MAX_DIMS, OBJECT_ITEMSIZE, Tensor, checked_count

B64 = "b64"
FLOATS = frozenset({"FP16", "BF16", "FP32", "FP64"})


def loads(body: bytes) -> tuple[Any, bool]:
    """The JSON document and whether it used the NaN/Infinity tokens (parsed then by the
    standard library, which accepts them; orjson, the fast path, does not)."""
    try:
        return orjson.loads(body), False
    except orjson.JSONDecodeError as exc:
        error = str(exc)
    if b"NaN" in body or b"Infinity" in body:
        try:
            return json.loads(body), True
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            pass
    raise BadRequest(f"JSON Parse error: {error}")


def is_b64(value: Any) -> bool:
    """TF Serving's binary string: an object with the one key `b64` holding a string."""
    return type(value) is dict and len(value) == 1 and type(value.get(B64)) is str


def shape_of(name: str, value: Any) -> tuple[int, ...]:
    """The shape the nesting says, read down the first elements (regularity is checked
    when the data is read)."""
    shape: list[int] = []
    while type(value) is list:
        shape.append(len(value))
        if len(shape) > MAX_DIMS:
            raise BadRequest(f"input '{name}': nests deeper than {MAX_DIMS} dimensions")
        if not value:
            break
        value = value[0]
    return tuple(shape)


def decode(name: str, datatype: str, value: Any, *, nonfinite: bool = False) -> np.ndarray:
    """`value` (a nested list or a scalar) as an array of `datatype`, shaped by its nesting.

    `nonfinite`: the document used NaN/Infinity tokens, which float tensors may hold.
    """
    shape = shape_of(name, value)
    try:
        checked_count(shape, DATATYPES[datatype].itemsize or OBJECT_ITEMSIZE)
    except ValueError as exc:
        raise BadRequest(f"input '{name}': {exc}") from None
    if datatype == "BYTES":
        out = np.empty(_count(shape), dtype=object)
        out[:] = [_element_bytes(name, v) for v in _leaves(name, value, shape)]
        return out.reshape(shape)
    if nonfinite and datatype in FLOATS:
        return _floats(name, datatype, shape, _leaves(name, value, shape))
    return json_tensors.decode(name, datatype, shape, value if type(value) is list else [value])


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _leaves(name: str, value: Any, shape: tuple[int, ...]) -> list[Any]:
    """The elements row-major, checking every list at depth i has shape[i] items."""
    level = [value]
    for size in shape:
        below: list[Any] = []
        for item in level:
            if type(item) is not list or len(item) != size:
                raise BadRequest(f"input '{name}': data must be lists of equal lengths")
            below.extend(item)
        level = below
    if any(type(item) is list for item in level):
        raise BadRequest(f"input '{name}': data must be lists of equal lengths")
    return level


def _element_bytes(name: str, value: Any) -> bytes:
    if type(value) is str:
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"input '{name}': a string is not valid UTF-8") from None
    if is_b64(value):
        text = value[B64]
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"input '{name}': unable to base64 decode {text[:20]!r}") from None
    raise BadRequest(f"input '{name}': BYTES data must be JSON strings or {{\"b64\": ...}} objects")


def _floats(name: str, datatype: str, shape: tuple[int, ...], leaves: list[Any]) -> np.ndarray:
    if not all(type(v) is float or type(v) is int for v in leaves):
        raise BadRequest(f"input '{name}': {datatype} data must be JSON numbers")
    try:
        wide = np.array(leaves, dtype=np.float64)
    except OverflowError:
        raise BadRequest(f"input '{name}': a value is outside the {datatype} range") from None
    with np.errstate(over="ignore"):
        out = wide.astype(DATATYPES[datatype].dtype)
    if (np.isinf(out) & np.isfinite(wide)).any():
        raise BadRequest(f"input '{name}': a value is outside the {datatype} range")
    return out.reshape(shape)


def encode(tensor: Tensor, *, b64: bool = False) -> Any:
    """A tensor as nested JSON: a numpy array orjson writes as nested lists (`dumps`), or
    nested Python lists for BYTES (UTF-8 strings; `{"b64": ...}` for every element when
    `b64`, else only for elements that are not UTF-8)."""
    data = tensor.data
    if tensor.datatype == "BYTES":
        items = np.empty(data.size, dtype=object)
        items[:] = [_element_json(v, b64) for v in data.reshape(-1).tolist()]
        return items.reshape(data.shape).tolist()
    if tensor.datatype in ("FP16", "BF16"):
        return data.astype(np.float32)
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("="))


def _element_json(value: bytes, b64: bool) -> Any:
    if not b64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {B64: base64.b64encode(value).decode("ascii")}


def nonfinite(tensors: tuple[Tensor, ...]) -> bool:
    """Whether a float tensor holds NaN or an infinity (JSON then needs its tokens)."""
    return any(
        t.datatype in FLOATS and not np.isfinite(t.data.astype(np.float64)).all() for t in tensors
    )


def dumps(doc: Any, *, tokens: bool = False) -> bytes:
    """orjson, or with `tokens` the standard library writing NaN/Infinity as TF Serving does
    (orjson would write null)."""
    if not tokens:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(_plain(doc), allow_nan=True, separators=(",", ":")).encode()


def _plain(doc: Any) -> Any:
    if isinstance(doc, np.ndarray | np.generic):
        return doc.tolist()
    if isinstance(doc, dict):
        return {k: _plain(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_plain(v) for v in doc]
    return doc

"""Protocol: a v2 JSON tensor's `data` <-> numpy, checked against its datatype as Triton does.

Used by v2_http.py (request inputs) and v2_http_client.py (answer outputs). Triton reads
JSON data with rapidjson's IsNumber/IsInt/IsBool/IsString, so: FP16/BF16/FP32/FP64 take
JSON numbers; INT*/UINT* take JSON integers within the datatype's range (2.0 is not an
integer, 300 is not a UINT8: both are refused, never truncated or wrapped); BOOL takes
true/false; BYTES takes strings. Never `true`, `"1.5"` or `null` for a number. Lists may
nest (flattened row-major), regularly and no deeper than the shape.

Speed matters (one resnet18 image is 150,528 numbers), so numbers are converted by
`array.array`, whose typecodes check type and range in C as they go: "d" takes only
ints and floats, "b".."Q" only ints within their range. `np.asarray` would coerce
`"1.5"`, `null` and 1.7 instead, and inferring a dtype first can allocate a string
array of every element's width. The one thing both let through is a bool (Python's
True is an int), so the elements equal to 0 or 1 are looked at again.
"""

from __future__ import annotations

from array import array
from itertools import chain
from typing import Any

import numpy as np

from gateway.errors import BadRequest
from gateway.tensors import DATATYPES, Tensor, as_bytes_array

_FLOATS = ("FP16", "BF16", "FP32", "FP64")
# array.array typecodes, native byte order; their sizes match the v2 datatypes on every
# platform CPython supports (b/h/i/q: 1/2/4/8 bytes).
_TYPECODES = {f: "d" for f in _FLOATS} | {
    "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q",
    "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q",
}  # fmt: skip
# What each datatype's elements must be in JSON, for error messages.
_EXPECTED = {"BOOL": "true or false", "BYTES": "strings"} | {f: "numbers" for f in _FLOATS}


def decode(
    name: str, datatype: str, shape: tuple[int, ...], data: Any, *, bools_possible: bool = True
) -> np.ndarray:
    """`data` as a numpy array of `shape` (a shape already checked to be valid).

    BadRequest, naming the tensor, when an element is not of the datatype's JSON type or
    range, the lists are ragged or nest deeper than the shape, or the count is wrong.
    `bools_possible=False` says the JSON text holds no `true`/`false` at all, which spares
    looking for booleans among the numbers.
    """
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': data must be a list")
    rows = _rows(name, data, max(1, len(shape)))
    count = 1
    for d in shape:
        count *= d
    if len(rows) * len(rows[0]) != count:
        raise BadRequest(
            f"input '{name}': {len(rows) * len(rows[0])} elements in data for shape "
            f"{list(shape)} ({count} elements)"
        )
    if datatype in ("BYTES", "BOOL"):
        leaves = list(chain.from_iterable(rows))
        if not _all_of(str if datatype == "BYTES" else bool, leaves):
            raise _refused(name, datatype)
        if datatype == "BOOL":
            return np.array(leaves, dtype=np.bool_).reshape(shape)
        return as_bytes_array(np.array(leaves, dtype=object)).reshape(shape)
    return _numbers(name, datatype, rows, bools_possible).reshape(shape)


def encode(t: Tensor) -> Any:
    """A tensor's elements as JSON carries them (floats for FP16/BF16, text for BYTES)."""
    flat = t.data.reshape(-1)
    if t.datatype == "BYTES":
        return [v.decode("utf-8", errors="replace") for v in flat.tolist()]
    if t.datatype in ("FP16", "BF16"):
        return flat.astype(np.float32)
    return np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("="))


def _rows(name: str, data: list[Any], depth: int) -> list[list[Any]]:
    """The innermost lists of regularly nested lists (flat data is one row), row-major;
    at most `depth` levels. Rows, not one flat list: a copy of 150k pointers saved."""
    rows, level = [data], 1
    while rows[0] and type(rows[0][0]) is list:
        if level == depth:
            raise BadRequest(f"input '{name}': data nests deeper than the shape's {depth} dims")
        children = list(chain.from_iterable(rows))
        if not _all_of(list, children) or len(set(map(len, children))) != 1:
            raise BadRequest(f"input '{name}': data must be lists of equal lengths")
        rows, level = children, level + 1
    return rows


def _all_of(kind: type, items: list[Any]) -> bool:
    return not items or set(map(type, items)) == {kind}


def _refused(name: str, datatype: str) -> BadRequest:
    expected = _EXPECTED.get(datatype, f"integers in the {datatype} range")
    return BadRequest(f"input '{name}': {datatype} data must be JSON {expected}")


def _numbers(
    name: str, datatype: str, rows: list[list[Any]], bools_possible: bool = True
) -> np.ndarray:
    """The flat array of a numeric datatype; array.array does the type and range checks."""
    code = _TYPECODES[datatype]
    values = array(code)
    try:
        for row in rows:
            values.fromlist(row)
    except (TypeError, OverflowError):
        raise _refused(name, datatype) from None
    native = np.frombuffer(values, dtype=code)
    if bools_possible and _hides_bools(native, rows):
        raise _refused(name, datatype)
    dtype = DATATYPES[datatype].dtype
    if code != "d" or datatype == "FP64":
        return native.astype(dtype, copy=False)
    with np.errstate(over="ignore"):
        out = native.astype(dtype)
    # JSON has no inf, so an inf here is a finite number past FP16/BF16/FP32's range.
    if not np.isfinite(out).all():
        raise BadRequest(f"input '{name}': a value is outside the {datatype} range")
    return out


def _hides_bools(values: np.ndarray, rows: list[list[Any]]) -> bool:
    """Whether a JSON true/false sits among the numbers (array.array took it as 1 or 0).

    Only elements equal to 0 or 1 can be bools. Where they are few (most data) each is
    looked up by index; where they are many every element's type is checked (for one
    resnet18 image about 0.1 ms against 3 ms).
    """
    suspects = np.flatnonzero((values == 0) | (values == 1))
    if suspects.size == 0:
        return False
    if suspects.size * 8 > values.size:
        return any(bool in set(map(type, row)) for row in rows)
    r, c = np.divmod(suspects, len(rows[0]))
    return any(type(rows[i][j]) is bool for i, j in zip(r.tolist(), c.tolist(), strict=True))

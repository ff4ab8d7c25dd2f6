"""Leaf: the one internal tensor representation and the one DATATYPES table.

Every converter (HTTP JSON, HTTP binary, gRPC raw contents, runners) goes through
`Datatype`, `encode_raw` and `decode_raw`, so a datatype is described in one place.
Tensor data is always a numpy array; BYTES tensors hold an object array of `bytes`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np

ParamValue = bool | int | float | str

OBJECT_ITEMSIZE = np.dtype(object).itemsize  # a BYTES tensor is an array of object pointers


@dataclass(frozen=True, slots=True)
class Datatype:
    """A v2 datatype: its numpy dtype (little-endian), element size, and gRPC contents field."""

    name: str
    dtype: np.dtype[Any]
    itemsize: int  # 0 for BYTES: variable length
    contents_field: str | None  # InferTensorContents field; None: raw only (FP16, BF16)


def _dt(name: str, dtype: Any, field_name: str | None) -> Datatype:
    d = np.dtype(dtype)
    return Datatype(name, d, 0 if d == np.dtype(object) else d.itemsize, field_name)


DATATYPES: Mapping[str, Datatype] = {
    d.name: d
    for d in (
        _dt("BOOL", np.bool_, "bool_contents"),
        _dt("UINT8", "<u1", "uint_contents"),
        _dt("UINT16", "<u2", "uint_contents"),
        _dt("UINT32", "<u4", "uint_contents"),
        _dt("UINT64", "<u8", "uint64_contents"),
        _dt("INT8", "<i1", "int_contents"),
        _dt("INT16", "<i2", "int_contents"),
        _dt("INT32", "<i4", "int_contents"),
        _dt("INT64", "<i8", "int64_contents"),
        _dt("FP16", "<f2", None),
        _dt("BF16", ml_dtypes.bfloat16, None),
        _dt("FP32", "<f4", "fp32_contents"),
        _dt("FP64", "<f8", "fp64_contents"),
        _dt("BYTES", object, "bytes_contents"),
    )
}

_BY_DTYPE: Mapping[np.dtype[Any], str] = {
    d.dtype.newbyteorder("=") if d.dtype.byteorder == "<" else d.dtype: d.name
    for d in DATATYPES.values()
}


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype name for a numpy array (str/bytes arrays become BYTES)."""
    if array.dtype.kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return _BY_DTYPE[array.dtype.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"no v2 datatype for numpy dtype {array.dtype}") from None


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named tensor. `data` carries the shape; BYTES data is an object array of bytes."""

    name: str
    datatype: str
    data: np.ndarray
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape  # numpy shapes are already tuples of Python ints

    @classmethod
    def from_numpy(cls, name: str, array: np.ndarray) -> Tensor:
        datatype = datatype_of(array)
        if datatype == "BYTES":
            array = as_bytes_array(array)
        return cls(name, datatype, array)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for; `binary` is the binary extension's per-output flag,
    `classification` the classification extension's top N (0: the tensor itself)."""

    name: str
    binary: bool | None = None
    classification: int = 0


@dataclass(frozen=True, slots=True)
class InferRequest:
    model_name: str
    inputs: tuple[Tensor, ...]
    model_version: str = ""
    id: str = ""
    outputs: tuple[RequestedOutput, ...] = ()
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InferResponse:
    model_name: str
    outputs: tuple[Tensor, ...]
    model_version: str = ""
    id: str = ""
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)


def as_bytes_array(array: np.ndarray) -> np.ndarray:
    """An object array of `bytes`, from str, bytes or object input (str is UTF-8 encoded)."""
    flat = [v.encode() if isinstance(v, str) else bytes(v) for v in array.reshape(-1).tolist()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def element_count(shape: tuple[int, ...] | list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# numpy refuses an array whose itemsize times the product of its dims (zeros counted as 1)
# passes the largest signed 64-bit int, or with more dims than it supports (numpy 1: 32,
# numpy 2: 64); shapes are checked against the same bounds first.
MAX_ARRAY_BYTES = 2**63 - 1
MAX_DIMS = 32


def checked_count(shape: Sequence[int], itemsize: int) -> int:
    """The element count of `shape`, or ValueError for a shape no numpy array can take.

    Clients send shapes such as [2**40, 2**40] or [0, 2**62]; refusing them here keeps
    every later reshape, allocation and size product in range.
    """
    if len(shape) > MAX_DIMS:
        raise ValueError(f"shape has {len(shape)} dimensions, more than {MAX_DIMS}")
    span = max(itemsize, 1)
    count = 1
    for d in shape:
        if d < 0:
            raise ValueError(f"shape {_brief(shape)} has a negative dimension")
        span *= max(d, 1)
        count *= d
        if span > MAX_ARRAY_BYTES:
            raise ValueError(f"shape {_brief(shape)} is too large for any tensor")
    return count


def _brief(shape: Sequence[int]) -> str:
    text = str(list(shape))
    return text if len(text) <= 80 else text[:77] + "..."


def encode_raw(datatype: str, array: np.ndarray) -> bytes:
    """Row-major little-endian bytes; BYTES elements as 4-byte LE length + payload."""
    dt = DATATYPES[datatype]
    if dt.itemsize == 0:
        return b"".join(struct.pack("<I", len(v)) + v for v in array.reshape(-1).tolist())
    return np.ascontiguousarray(array, dtype=dt.dtype).tobytes()


def decode_raw(datatype: str, shape: tuple[int, ...], buf: bytes | memoryview) -> np.ndarray:
    """The inverse of `encode_raw`; numeric data is a zero-copy view of `buf`.

    Raises ValueError when the byte count does not match the shape, or the shape is
    beyond any array (see `checked_count`).
    """
    dt = DATATYPES[datatype]
    count = checked_count(shape, dt.itemsize or OBJECT_ITEMSIZE)
    if dt.itemsize == 0:
        return _decode_bytes(shape, count, memoryview(buf))
    expected = count * dt.itemsize
    if len(buf) != expected:
        raise ValueError(
            f"expected {expected} bytes for {datatype} shape {_brief(shape)}, got {len(buf)}"
        )
    return np.frombuffer(buf, dtype=dt.dtype).reshape(shape)


def _decode_bytes(shape: tuple[int, ...], count: int, view: memoryview) -> np.ndarray:
    # Every element needs at least its 4-byte length: refuse before allocating for a
    # shape the data cannot hold (a tiny body must not allocate gigabytes).
    if count * 4 > len(view):
        raise ValueError(f"{len(view)} bytes cannot hold {count} BYTES elements")
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(view):
            raise ValueError(f"BYTES data ends after {i} of {count} elements")
        (n,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if pos + n > len(view):
            raise ValueError(f"BYTES element {i} claims {n} bytes past the end of the data")
        out[i] = bytes(view[pos : pos + n])
        pos += n
    if pos != len(view):
        raise ValueError(f"{len(view) - pos} bytes left over after {count} BYTES elements")
    return out.reshape(shape)

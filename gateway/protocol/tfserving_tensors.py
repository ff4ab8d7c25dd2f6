"""Protocol: TensorFlow's TensorProto <-> Tensor, read as a server must read a client's.

The gateway's TF Serving front end (compat_tfserving.py) reads TensorProtos that clients
wrote (`tf.make_tensor_proto`: tensor_content for most arrays, the typed `*_val` field
for scalars, booleans and a value broadcast to a shape) and answers as TF Serving does,
in the typed fields, which clients read directly (`reply.outputs["y"].float_val`).
Nothing a client sends can make this allocate past `max_fill_bytes` or raise anything
but BadRequest: shapes are checked before any allocation, narrow integers must fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gateway.errors import BadRequest
from gateway.protocol.pb import tfserving_pb2 as pb
from gateway.tensors import (
    DATATYPES,
    OBJECT_ITEMSIZE,
    Tensor,
    checked_count,
    decode_raw,
    encode_raw,
)

# v2 datatype <-> TensorFlow DataType
DTYPES: Mapping[str, int] = {
    "BOOL": pb.DT_BOOL,
    "UINT8": pb.DT_UINT8,
    "UINT16": pb.DT_UINT16,
    "UINT32": pb.DT_UINT32,
    "UINT64": pb.DT_UINT64,
    "INT8": pb.DT_INT8,
    "INT16": pb.DT_INT16,
    "INT32": pb.DT_INT32,
    "INT64": pb.DT_INT64,
    "FP16": pb.DT_HALF,
    "BF16": pb.DT_BFLOAT16,
    "FP32": pb.DT_FLOAT,
    "FP64": pb.DT_DOUBLE,
    "BYTES": pb.DT_STRING,
}
DATATYPE_OF: Mapping[int, str] = {v: k for k, v in DTYPES.items()}

# The typed field TensorFlow's AsProtoField writes for each v2 datatype, and the numpy
# type of that field's values.
VALUES_FIELD: Mapping[str, str] = {
    "BOOL": "bool_val",
    "UINT8": "int_val",
    "UINT16": "int_val",
    "UINT32": "uint32_val",
    "UINT64": "uint64_val",
    "INT8": "int_val",
    "INT16": "int_val",
    "INT32": "int_val",
    "INT64": "int64_val",
    "FP16": "half_val",
    "BF16": "half_val",
    "FP32": "float_val",
    "FP64": "double_val",
    "BYTES": "string_val",
}
_FIELD_DTYPE: Mapping[str, Any] = {
    "bool_val": np.bool_,
    "int_val": np.int32,
    "uint32_val": np.uint32,
    "uint64_val": np.uint64,
    "int64_val": np.int64,
    "half_val": np.int32,
    "float_val": np.float32,
    "double_val": np.float64,
}
# Datatypes narrower than their field: every value must fit (TensorFlow would truncate).
_RANGE: Mapping[str, tuple[int, int]] = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "FP16": (0, 2**16 - 1),  # half_val holds the 16-bit patterns
    "BF16": (0, 2**16 - 1),
}

MAX_FILL_BYTES = 64 * 1024 * 1024
"""Default bound on a tensor grown from fewer values than its shape holds."""


def dtype_name(dtype: int) -> str:
    """DT_FLOAT for 1; the number itself for a value the enum lacks."""
    try:
        return pb.DataType.Name(dtype)  # type: ignore[arg-type]
    except ValueError:
        return str(dtype)


def tensor_from_pb(
    name: str, proto: pb.TensorProto, *, max_fill_bytes: int = MAX_FILL_BYTES
) -> Tensor:
    """A client's TensorProto as a Tensor, read as TensorFlow reads it.

    tensor_content when set (not for strings); else the typed field: as many values as
    the shape holds, none (zeros), or fewer, the last repeated (TensorFlow's rule, for
    `make_tensor_proto(0.0, shape=[n])`), within `max_fill_bytes`.
    """
    datatype = DATATYPE_OF.get(proto.dtype)
    if datatype is None:
        raise BadRequest(f"tensor '{name}': unsupported dtype {dtype_name(proto.dtype)}")
    if proto.tensor_shape.unknown_rank or any(d.size < 0 for d in proto.tensor_shape.dim):
        raise BadRequest(f"tensor '{name}': shape is not fully known")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    itemsize = DATATYPES[datatype].itemsize
    try:
        count = checked_count(shape, itemsize or OBJECT_ITEMSIZE)
    except ValueError as exc:
        raise BadRequest(f"tensor '{name}': {exc}") from None
    if proto.tensor_content:
        if datatype == "BYTES":
            raise BadRequest(f"tensor '{name}': DT_STRING data must be in string_val")
        try:
            return Tensor(name, datatype, decode_raw(datatype, shape, proto.tensor_content))
        except ValueError as exc:
            raise BadRequest(f"tensor '{name}': tensor_content: {exc}") from None
    values = getattr(proto, VALUES_FIELD[datatype])
    given = len(values)
    if given > count:
        raise BadRequest(f"tensor '{name}': {given} values for shape {list(shape)}")
    if given < count and count * (itemsize or OBJECT_ITEMSIZE) > max_fill_bytes:
        raise BadRequest(
            f"tensor '{name}': {given} values would fill shape {list(shape)}, past the "
            f"{max_fill_bytes}-byte bound on a filled tensor"
        )
    return Tensor(name, datatype, _typed(name, datatype, values, count).reshape(shape))


def _typed(name: str, datatype: str, values: Any, count: int) -> np.ndarray:
    if datatype == "BYTES":
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    else:
        flat = np.array(values, dtype=_FIELD_DTYPE[VALUES_FIELD[datatype]])
        bounds = _RANGE.get(datatype)
        if bounds is not None and flat.size and (flat.min() < bounds[0] or flat.max() > bounds[1]):
            raise BadRequest(f"tensor '{name}': a value is outside the {datatype} range")
        if datatype in ("FP16", "BF16"):
            flat = flat.astype(np.uint16).view(DATATYPES[datatype].dtype)
        else:
            flat = flat.astype(DATATYPES[datatype].dtype, copy=False)
    if len(flat) == count:
        return flat
    if len(flat) == 0:
        fill = b"" if datatype == "BYTES" else 0
        out = np.empty(count, dtype=flat.dtype)
        out[:] = fill
        return out
    return np.concatenate([flat, np.full(count - len(flat), flat[-1], dtype=flat.dtype)])


def tensor_to_pb(tensor: Tensor, *, typed: bool = True) -> pb.TensorProto:
    """A TensorProto of `tensor`: in its typed field (TF Serving's answers), or with
    `typed=False` in tensor_content (what `tf.make_tensor_proto` writes for arrays)."""
    proto = pb.TensorProto(
        dtype=DTYPES[tensor.datatype],  # type: ignore[arg-type]
        tensor_shape=pb.TensorShapeProto(
            dim=[pb.TensorShapeProto.Dim(size=d) for d in tensor.shape]
        ),
    )
    flat = np.ascontiguousarray(tensor.data).reshape(-1)
    if tensor.datatype == "BYTES":
        proto.string_val.extend(flat.tolist())
    elif not typed:
        proto.tensor_content = encode_raw(tensor.datatype, tensor.data)
    else:
        if tensor.datatype in ("FP16", "BF16"):
            flat = flat.view(np.uint16)
        getattr(proto, VALUES_FIELD[tensor.datatype]).extend(flat.tolist())
    return proto

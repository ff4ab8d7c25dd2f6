"""StableHLO -> ONNX, shape ops: reshape, broadcast, transpose, concatenate, slice, pad,
get_dimension_size, iota.

Shape tensors are i32 in StableHLO and i64 in ONNX: cast where they meet. The batch
size travels as the symbol BATCH (see `Val.sym`), so a reshape that keeps the batch dim
becomes a constant Reshape with 0, and a dynamic broadcast is left to the element-wise
op that consumes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo
from onnx import helper

from model_repo.importer.onnx_shapes import BATCH, batch_shape
from model_repo.importer.stablehlo_onnx import Translator, Unsupported, Val, ints
from model_repo.importer.stablehlo_ops import Handler, as_i64, known


def _reshape(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    x = ins[0]
    out = Val(op.results[0].type)
    if op.name == "stablehlo.dynamic_reshape":
        sym = symbols(ins[1])
        data: list[int | str] = [BATCH if d is None else d for d in x.shape]
        target = batch_shape(list(sym), data) if sym is not None else None
        if target is not None:  # the batch dim as -1 or 0: no Shape op needed
            shape = tr.g.const(np.array(target, dtype=np.int64))
        else:
            shape = as_i64(tr, ins[1])
    elif None in out.shape:
        raise Unsupported("stablehlo.reshape to a dynamic shape")
    else:
        if x.known is not None:
            return [known(x.known.reshape(out.shape), op)]  # type: ignore[arg-type]
        if x.sym is not None and len(x.sym) == int(np.prod(out.shape)):  # scalar <-> [1]
            result = tr.out(
                op,
                tr.g.node("Reshape", [tr.name(x), tr.g.const(np.array(out.shape, dtype=np.int64))]),
            )
            result.sym = x.sym
            return [result]
        shape = tr.g.const(np.array(out.shape, dtype=np.int64))
    return [tr.out(op, tr.g.node("Reshape", [tr.name(x), shape]))]


def symbols(v: Val) -> tuple[int | str, ...] | None:
    """A small integer tensor's content, BATCH for the batch size; None when unknown."""
    if v.known is not None and v.known.ndim <= 1 and v.known.dtype.kind in "iu":
        return tuple(int(x) for x in v.known.reshape(-1))
    return v.sym


def _broadcast(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    x = ins[0]
    dims = ints(op.attributes["broadcast_dimensions"])
    out = Val(op.results[0].type)
    rank = len(out.shape)
    static = op.name == "stablehlo.broadcast_in_dim"
    order = sorted(range(len(dims)), key=lambda i: dims[i])
    missing = [j for j in range(rank) if j not in dims]
    # Folded only while small: a broadcast weight would bloat the file (Expand is free).
    if static and x.known is not None and np.prod(out.shape) <= max(x.known.size, 1024):
        arr = np.expand_dims(np.transpose(x.known, order), tuple(missing))
        return [known(np.broadcast_to(arr, out.shape), op)]  # type: ignore[arg-type]
    name = tr.name(x) if static else tr.bname(x)  # a pending operand stays pending
    if order != list(range(len(dims))):
        name = tr.g.node("Transpose", [name], perm=order)
    if missing:
        name = tr.g.node("Unsqueeze", [name, tr.g.const(np.array(missing, dtype=np.int64))])
    if static:
        if list(x.shape) == out.shape and not missing:
            return [tr.out(op, name)]
        shape = tr.g.const(np.array(out.shape, dtype=np.int64))
        return [tr.out(op, tr.g.node("Expand", [name, shape]))]
    # Dynamic: left pending; element-wise consumers broadcast it themselves.
    return [Val(op.results[0].type, name=name, pending=ins[1])]


def _transpose(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    perm = ints(op.attributes["permutation"])
    if ins[0].known is not None:
        return [known(np.transpose(ins[0].known, perm), op)]
    return [tr.out(op, tr.g.node("Transpose", [tr.name(ins[0])], perm=perm))]


def _concatenate(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    axis = ir.IntegerAttr(op.attributes["dimension"]).value
    if all(v.known is not None for v in ins):
        return [known(np.concatenate([v.known for v in ins], axis=axis), op)]  # type: ignore[misc]
    out = tr.out(op, tr.g.node("Concat", [tr.name(v) for v in ins], axis=axis))
    parts = [symbols(v) for v in ins]
    if all(p is not None for p in parts):
        out.sym = tuple(x for p in parts for x in p)  # type: ignore[union-attr]
    return [out]


def _slice(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    starts = ints(op.attributes["start_indices"])
    limits = ints(op.attributes["limit_indices"])
    strides = ints(op.attributes.get("strides") if "strides" in op.attributes else None,
                   [1] * len(starts))  # fmt: skip
    if ins[0].known is not None:
        idx = tuple(slice(a, b, c) for a, b, c in zip(starts, limits, strides, strict=True))
        return [known(ins[0].known[idx], op)]
    args = [np.array(v, dtype=np.int64) for v in (starts, limits, range(len(starts)), strides)]
    return [tr.out(op, tr.g.node("Slice", [tr.name(ins[0]), *(tr.g.const(a) for a in args)]))]


def _pad(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    low, high = ints(op.attributes["edge_padding_low"]), ints(op.attributes["edge_padding_high"])
    if any(ints(op.attributes["interior_padding"])) or min(low + high, default=0) < 0:
        raise Unsupported("stablehlo.pad with interior or negative padding")
    pads = tr.g.const(np.array(low + high, dtype=np.int64))
    return [tr.out(op, tr.g.node("Pad", [tr.name(ins[0]), pads, tr.name(ins[1])]))]


def _dimension_size(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    dim = ir.IntegerAttr(op.attributes["dimension"]).value
    size = ins[0].shape[dim]
    if size is not None:
        return [known(np.array(size), op)]
    shape = tr.g.node("Shape", [tr.name(ins[0])], start=dim, end=dim + 1)
    scalar = tr.g.node("Reshape", [shape, tr.g.const(np.array([], dtype=np.int64))])
    to = helper.np_dtype_to_tensor_dtype(Val(op.results[0].type).dtype)
    out = tr.out(op, tr.g.node("Cast", [scalar], to=to))
    out.sym = (BATCH,) if dim == 0 else None  # signatures have no other dynamic dim
    return [out]


def _iota(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    out = Val(op.results[0].type)
    if None in out.shape:
        raise Unsupported("stablehlo.iota with a dynamic shape")
    dim = ir.IntegerAttr(op.attributes["iota_dimension"]).value
    shape = [int(d) for d in out.shape]  # type: ignore[arg-type]
    ramp = np.arange(shape[dim]).reshape([-1 if j == dim else 1 for j in range(len(shape))])
    return [known(np.broadcast_to(ramp, shape), op)]


def _gather(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    """The gathers JAX emits for `x[:, a:b]` (a slice whose start is a constant): a Slice.
    Gathers at run-time indices (embedding lookups) are not translated."""
    x, indices = ins[0], ins[1]
    dn = stablehlo.GatherDimensionNumbers(op.attributes["dimension_numbers"])
    rank = len(x.shape)
    if (
        indices.known is None
        or list(dn.offset_dims) != list(range(rank))
        or list(dn.collapsed_slice_dims)
        or list(dn.operand_batching_dims)
        or indices.known.size != len(dn.start_index_map)
    ):
        raise Unsupported(f"{op.name} other than a slice at constant starts")
    if op.name == "stablehlo.gather":
        sizes: list[int | str] = ints(op.attributes["slice_sizes"])  # type: ignore[assignment]
    else:
        sym = symbols(ins[2])
        if sym is None:
            raise Unsupported(f"{op.name} with slice sizes known only at run time")
        sizes = list(sym)
    axes, starts, ends = [], [], []
    for axis, start in zip(dn.start_index_map, indices.known.reshape(-1), strict=True):
        size, dim = sizes[axis], x.shape[axis]
        if size == BATCH or dim is None:
            raise Unsupported(f"{op.name} slicing the batch dim")
        start = min(max(int(start), 0), dim - int(size))  # gather clamps its starts
        axes.append(int(axis))
        starts.append(start)
        ends.append(start + int(size))
    args = [np.array(v, dtype=np.int64) for v in (starts, ends, axes)]
    return [tr.out(op, tr.g.node("Slice", [tr.name(x), *(tr.g.const(a) for a in args)]))]


HANDLERS: dict[str, Handler] = {
    "stablehlo.gather": _gather,
    "stablehlo.dynamic_gather": _gather,
    "stablehlo.reshape": _reshape,
    "stablehlo.dynamic_reshape": _reshape,
    "stablehlo.broadcast_in_dim": _broadcast,
    "stablehlo.dynamic_broadcast_in_dim": _broadcast,
    "stablehlo.transpose": _transpose,
    "stablehlo.concatenate": _concatenate,
    "stablehlo.slice": _slice,
    "stablehlo.pad": _pad,
    "stablehlo.get_dimension_size": _dimension_size,
    "stablehlo.iota": _iota,
}

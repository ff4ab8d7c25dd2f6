"""StableHLO -> ONNX, element-wise and shape ops (the walker is stablehlo_onnx.py).

Ops whose inputs are all known constants are folded with numpy, so shape arithmetic
on static dims and the platform `case` resolve at translation time; the rest become
ONNX nodes. Shape tensors are i32 in StableHLO and i64 in ONNX: cast where they meet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo
from onnx import helper

from model_repo.importer.stablehlo_onnx import BATCH, Translator, Unsupported, Val, dense, ints

Handler = Callable[[Translator, Any, list[Val]], list[Val]]

_BINARY: dict[str, tuple[str, Callable[..., Any] | None]] = {
    "stablehlo.add": ("Add", np.add),
    "stablehlo.subtract": ("Sub", np.subtract),
    "stablehlo.multiply": ("Mul", np.multiply),
    "stablehlo.divide": ("Div", None),
    "stablehlo.maximum": ("Max", np.maximum),
    "stablehlo.minimum": ("Min", np.minimum),
    "stablehlo.power": ("Pow", None),
    "stablehlo.and": ("And", np.logical_and),
    "stablehlo.or": ("Or", np.logical_or),
    "stablehlo.xor": ("Xor", np.logical_xor),
}
_UNARY = {
    "stablehlo.abs": "Abs", "stablehlo.negate": "Neg", "stablehlo.exponential": "Exp",
    "stablehlo.log": "Log", "stablehlo.sqrt": "Sqrt", "stablehlo.tanh": "Tanh",
    "stablehlo.logistic": "Sigmoid", "stablehlo.floor": "Floor", "stablehlo.ceil": "Ceil",
    "stablehlo.sine": "Sin", "stablehlo.cosine": "Cos", "stablehlo.tan": "Tan",
    "stablehlo.sign": "Sign", "stablehlo.round_nearest_even": "Round", "chlo.erf": "Erf",
}  # fmt: skip
_COMPARE = {
    "EQ": ("Equal", np.equal), "GT": ("Greater", np.greater),
    "GE": ("Greater", np.greater_equal), "LT": ("Less", np.less),
    "LE": ("Less", np.less_equal), "NE": ("Equal", np.not_equal),
}  # fmt: skip
# composites whose name is one ONNX op; any other composite runs its decomposition
_COMPOSITES = {"chlo.erf": "Erf", "chlo.tan": "Tan"}


def known(value: np.ndarray, op: Any, i: int = 0) -> Val:
    return Val(op.results[i].type, known=np.asarray(value, dtype=Val(op.results[i].type).dtype))


def as_i64(tr: Translator, v: Val) -> str:
    if v.known is not None:
        return tr.g.const(v.known.astype(np.int64))
    return tr.g.node("Cast", [tr.name(v)], to=helper.np_dtype_to_tensor_dtype(np.dtype(np.int64)))


def _constant(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    return [Val(op.results[0].type, known=dense(op.attributes["value"]))]


def _binary(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    onnx_op, fold = _BINARY[op.name]
    a, b = ins
    if fold is not None and a.known is not None and b.known is not None:
        return [known(fold(a.known, b.known), op)]
    if onnx_op in ("And", "Or", "Xor") and a.dtype != np.bool_:
        onnx_op = "Bitwise" + onnx_op
    if op.name == "stablehlo.remainder":
        return [tr.elementwise(op, "Mod", ins, fmod=1)]
    out = tr.elementwise(op, onnx_op, ins)
    if op.name == "stablehlo.multiply" and a.sym and b.sym and len(a.sym) == len(b.sym):
        out.sym = _sym_product(a.sym, b.sym)
    return [out]


def _sym_product(
    a: tuple[int | str, ...], b: tuple[int | str, ...]
) -> tuple[int | str, ...] | None:
    """b*64 and the like stay unknown; only products with a 1 keep the batch symbol."""
    out: list[int | str] = []
    for x, y in zip(a, b, strict=True):
        if isinstance(x, int) and isinstance(y, int):
            out.append(x * y)
        elif x == 1 or y == 1:
            out.append(y if x == 1 else x)
        else:
            return None
    return tuple(out)


def _unary(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    (x,) = ins
    if op.name == "stablehlo.negate" and x.known is not None:
        return [known(-x.known, op)]
    return [tr.elementwise(op, _UNARY[op.name], ins)]


def _rsqrt(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    out = tr.elementwise(op, "Sqrt", ins)
    out.name = tr.g.node("Reciprocal", [tr.bname(out)])
    return [out]


def _not(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    return [tr.elementwise(op, "Not" if ins[0].dtype == np.bool_ else "BitwiseNot", ins)]


def _expm1_log1p(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    one = Val(op.results[0].type, known=np.ones((), ins[0].dtype))
    if op.name == "stablehlo.exponential_minus_one":
        out = tr.elementwise(op, "Exp", ins)
        out.name = tr.g.node("Sub", [tr.bname(out), tr.bname(one)])
    else:
        out = tr.elementwise(op, "Add", [ins[0], one])
        out.pending = ins[0].pending
        out.name = tr.g.node("Log", [tr.bname(out)])
    return [out]


def _compare(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    direction = stablehlo.ComparisonDirectionAttr(op.attributes["comparison_direction"]).value
    onnx_op, fold = _COMPARE[direction]
    a, b = ins
    if a.known is not None and b.known is not None:
        return [known(fold(a.known, b.known), op)]
    out = tr.elementwise(op, onnx_op, ins)
    if direction in ("GE", "LE"):  # Or(.., Equal): onnx2torch lacks GreaterOrEqual/LessOrEqual
        equal = tr.g.node("Equal", [tr.bname(a), tr.bname(b)])
        out.name = tr.g.node("Or", [tr.bname(out), equal])
    if direction == "NE":
        out.name = tr.g.node("Not", [tr.bname(out)])
    return [out]


def _select(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    p, t, f = ins
    if p.known is not None and t.known is not None and f.known is not None:
        return [known(np.where(p.known, t.known, f.known), op)]
    return [tr.elementwise(op, "Where", ins)]


def _clamp(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    lo, x, hi = ins
    out = tr.elementwise(op, "Min", [x, hi])
    out.name = tr.g.node("Max", [tr.bname(out), tr.bname(lo)])
    if x.pending is None or lo.pending is None:
        out.pending = None
    return [out]


def _convert(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    (x,) = ins
    target = Val(op.results[0].type).dtype
    if x.known is not None:
        return [known(x.known.astype(target), op)]
    if x.dtype == target:
        out = Val(op.results[0].type, name=tr.bname(x), pending=x.pending)
    else:
        out = tr.elementwise(op, "Cast", ins, to=helper.np_dtype_to_tensor_dtype(target))
    out.sym = x.sym
    return [out]


def _reshape(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    x = ins[0]
    out = Val(op.results[0].type)
    if op.name == "stablehlo.dynamic_reshape":
        sym = symbols(ins[1])
        if sym is not None and sym.count(BATCH) == 1 and sym[0] == BATCH and x.shape[:1] == [None]:
            # ONNX Reshape's 0 copies the input's dim: the batch dim, no Shape op needed
            shape = tr.g.const(np.array([0, *sym[1:]], dtype=np.int64))
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
    name = tr.name(x)
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


def _custom_call(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    target = ir.StringAttr(op.attributes["call_target_name"]).value
    if target == "shape_assertion":  # a runtime check of the symbolic dims; no results
        return []
    if target == "Sharding" and len(ins) == 1:
        return [tr.out(op, tr.name(ins[0]))]
    raise Unsupported(f"stablehlo.custom_call @{target}")


def _call(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    return tr.call(ir.FlatSymbolRefAttr(op.attributes["callee"]).value, ins)


def _case(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    index = ins[0].known
    if index is None:
        raise Unsupported("stablehlo.case on a value known only at run time")
    branch = int(index) if 0 <= int(index) < len(op.regions) else len(op.regions) - 1
    return tr.region(op, branch, [])


def _composite(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    name = ir.StringAttr(op.attributes["name"]).value
    if name in _COMPOSITES and len(ins) == 1:
        return [tr.out(op, tr.g.node(_COMPOSITES[name], [tr.name(ins[0])]))]
    return tr.call(ir.FlatSymbolRefAttr(op.attributes["decomposition"]).value, ins)


def _passthrough(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    return list(ins)


HANDLERS: dict[str, Handler] = {
    **{name: _binary for name in _BINARY},
    "stablehlo.remainder": _binary,
    **{name: _unary for name in _UNARY},
    "stablehlo.constant": _constant,
    "stablehlo.rsqrt": _rsqrt,
    "stablehlo.not": _not,
    "stablehlo.exponential_minus_one": _expm1_log1p,
    "stablehlo.log_plus_one": _expm1_log1p,
    "stablehlo.compare": _compare,
    "stablehlo.select": _select,
    "stablehlo.clamp": _clamp,
    "stablehlo.convert": _convert,
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
    "stablehlo.custom_call": _custom_call,
    "func.call": _call,
    "stablehlo.case": _case,
    "stablehlo.composite": _composite,
    "stablehlo.optimization_barrier": _passthrough,
}

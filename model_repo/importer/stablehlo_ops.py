"""StableHLO -> ONNX, element-wise and control ops (the walker is stablehlo_onnx.py).

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

from model_repo.importer.stablehlo_onnx import Translator, Unsupported, Val, dense

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
    "stablehlo.custom_call": _custom_call,
    "func.call": _call,
    "stablehlo.case": _case,
    "stablehlo.composite": _composite,
    "stablehlo.optimization_barrier": _passthrough,
}

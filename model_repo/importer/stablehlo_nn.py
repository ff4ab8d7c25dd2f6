"""StableHLO -> ONNX, the network ops: dot_general, convolution, reduce, reduce_window.

StableHLO states layouts through dimension numbers; ONNX's Conv and pools want NCHW and
OIHW, so operands are transposed in and the result transposed back (ONNX Runtime folds
the constant kernel's transpose, and drops identity ones).
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from model_repo.importer.stablehlo_onnx import Translator, Unsupported, Val, dense, ints
from model_repo.importer.stablehlo_ops import Handler

_REDUCERS = {
    "stablehlo.add": ("ReduceSum", 0.0),
    "stablehlo.maximum": ("ReduceMax", -np.inf),
    "stablehlo.minimum": ("ReduceMin", np.inf),
    "stablehlo.multiply": ("ReduceProd", 1.0),
}


def _attr(attrs: Any, key: str) -> ir.Attribute | None:
    """The attribute, or None: MLIR's attribute maps have no .get."""
    return attrs[key] if key in attrs else None  # noqa: SIM401


def _transposed(tr: Translator, name: str, perm: list[int]) -> str:
    if perm == sorted(perm):
        return name
    return tr.g.node("Transpose", [name], perm=perm)


def _inverse(perm: list[int]) -> list[int]:
    return [int(i) for i in np.argsort(perm)]


def _dot_general(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    dn = stablehlo.DotDimensionNumbers(op.attributes["dot_dimension_numbers"])
    lb, rb = list(dn.lhs_batching_dimensions), list(dn.rhs_batching_dimensions)
    lc, rc = list(dn.lhs_contracting_dimensions), list(dn.rhs_contracting_dimensions)
    lhs, rhs = ins
    lr, rr = len(lhs.shape), len(rhs.shape)
    a, b = tr.name(lhs), tr.name(rhs)
    if not lb and lr == 2 and rr == 2 and lc == [1] and rc in ([0], [1]):
        if rc == [1]:
            b = tr.g.node("Transpose", [b], perm=[1, 0])
        return [tr.out(op, tr.g.node("MatMul", [a, b]))]
    letters = iter(string.ascii_letters)
    left = [""] * lr
    right = [""] * rr
    for i, j in zip(lb + lc, rb + rc, strict=True):
        left[i] = right[j] = next(letters)
    for dims in (left, right):
        for k, c in enumerate(dims):
            dims[k] = c or next(letters)
    free = [left[i] for i in range(lr) if i not in lb + lc]
    free += [right[j] for j in range(rr) if j not in rb + rc]
    result = "".join(left[i] for i in lb) + "".join(free)
    equation = f"{''.join(left)},{''.join(right)}->{result}"
    return [tr.out(op, tr.g.node("Einsum", [a, b], equation=equation))]


def _convolution(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    attrs = op.attributes
    dn = stablehlo.ConvDimensionNumbers(attrs["dimension_numbers"])
    spatial = len(dn.input_spatial_dimensions)
    if any(d != 1 for d in ints(attrs.get("lhs_dilation") if "lhs_dilation" in attrs else None,
                                [1] * spatial)):  # fmt: skip
        raise Unsupported("stablehlo.convolution with lhs_dilation (a transposed convolution)")
    if "window_reversal" in attrs and any(ir.DenseBoolArrayAttr(attrs["window_reversal"])):
        raise Unsupported("stablehlo.convolution with window_reversal")
    if "batch_group_count" in attrs and ir.IntegerAttr(attrs["batch_group_count"]).value != 1:
        raise Unsupported("stablehlo.convolution with batch_group_count > 1")
    groups = (
        ir.IntegerAttr(attrs["feature_group_count"]).value if "feature_group_count" in attrs else 1
    )
    strides = ints(_attr(attrs, "window_strides"), [1] * spatial)
    dilations = ints(_attr(attrs, "rhs_dilation"), [1] * spatial)
    padding = (dense(attrs["padding"]).reshape(spatial, 2) if "padding" in attrs
               else np.zeros((spatial, 2), dtype=np.int64))  # fmt: skip
    if (padding < 0).any():
        raise Unsupported("stablehlo.convolution with negative padding")
    x_perm = [dn.input_batch_dimension, dn.input_feature_dimension, *dn.input_spatial_dimensions]
    k_perm = [dn.kernel_output_feature_dimension, dn.kernel_input_feature_dimension,
              *dn.kernel_spatial_dimensions]  # fmt: skip
    o_perm = [dn.output_batch_dimension, dn.output_feature_dimension,
              *dn.output_spatial_dimensions]  # fmt: skip
    x = _transposed(tr, tr.name(ins[0]), x_perm)
    k = _transposed(tr, tr.name(ins[1]), k_perm)
    y = tr.g.node(
        "Conv", [x, k], strides=strides, dilations=dilations, group=groups,
        pads=[int(p) for p in padding[:, 0]] + [int(p) for p in padding[:, 1]],
    )  # fmt: skip
    return [tr.out(op, _transposed(tr, y, _inverse(o_perm)))]


def _body_op(op: Any) -> str:
    body = [o.operation.name for o in op.regions[0].blocks[0].operations]
    if len(body) != 2 or body[1] != "stablehlo.return" or body[0] not in _REDUCERS:
        raise Unsupported(f"{op.name} with the body {body}")
    return str(body[0])


def _check_init(op: Any, init: Val, identity: float) -> None:
    if init.known is None or not np.all(init.known == np.asarray(identity, init.known.dtype)):
        raise Unsupported(f"{op.name} whose init value is not its reducer's identity")


def _reduce(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    if len(ins) != 2:
        raise Unsupported(f"stablehlo.reduce over {len(ins) // 2} operands (argmax/argmin)")
    x, init = ins
    onnx_op, identity = _REDUCERS[_body_op(op)]
    _check_init(op, init, identity)
    axes = ints(op.attributes["dimensions"])
    if onnx_op == "ReduceSum":
        out = tr.g.node(
            onnx_op, [tr.name(x), tr.g.const(np.array(axes, dtype=np.int64))], keepdims=0
        )
    else:
        out = tr.g.node(onnx_op, [tr.name(x)], axes=axes, keepdims=0)
    return [tr.out(op, out)]


def _reduce_window(tr: Translator, op: Any, ins: list[Val]) -> list[Val]:
    if len(ins) != 2:
        raise Unsupported("stablehlo.reduce_window over several operands")
    x, init = ins
    reducer = _body_op(op)
    if reducer not in ("stablehlo.maximum", "stablehlo.add"):
        raise Unsupported(f"stablehlo.reduce_window with {reducer}")
    _check_init(op, init, _REDUCERS[reducer][1])
    a = op.attributes
    rank = len(x.shape)
    window = ints(a["window_dimensions"])
    strides = ints(_attr(a, "window_strides"), [1] * rank)
    dilations = ints(_attr(a, "window_dilations"), [1] * rank)
    if any(d != 1 for d in ints(_attr(a, "base_dilations"), [1] * rank)):
        raise Unsupported("stablehlo.reduce_window with base_dilations")
    pads = dense(a["padding"]).reshape(rank, 2) if "padding" in a else np.zeros((rank, 2), int)
    pooled = [
        i for i in range(rank)
        if window[i] != 1 or strides[i] != 1 or pads[i].any() or dilations[i] != 1
    ]  # fmt: skip
    kept = [i for i in range(rank) if i not in pooled]
    if len(kept) != 2 or not pooled:
        raise Unsupported(f"stablehlo.reduce_window pooling dims {pooled} of a rank-{rank} tensor")
    perm = kept + pooled
    y = _transposed(tr, tr.name(x), perm)
    kw: dict[str, Any] = {
        "kernel_shape": [window[i] for i in pooled],
        "strides": [strides[i] for i in pooled],
        "pads": [int(pads[i, 0]) for i in pooled] + [int(pads[i, 1]) for i in pooled],
    }
    if reducer == "stablehlo.maximum":
        y = tr.g.node("MaxPool", [y], dilations=[dilations[i] for i in pooled], **kw)
    else:
        if any(dilations[i] != 1 for i in pooled):
            raise Unsupported("stablehlo.reduce_window sum with window dilations")
        y = tr.g.node("AveragePool", [y], count_include_pad=1, **kw)
        size = float(np.prod(kw["kernel_shape"]))
        y = tr.g.node("Mul", [y, tr.g.const(np.array(size, dtype=x.dtype))])
    return [tr.out(op, _transposed(tr, y, _inverse(perm)))]


HANDLERS: dict[str, Handler] = {
    "stablehlo.dot_general": _dot_general,
    "stablehlo.convolution": _convolution,
    "stablehlo.reduce": _reduce,
    "stablehlo.reduce_window": _reduce_window,
}

"""ONNX graphs: Reshapes whose target shape is computed from the batch size get a constant.

Exporters write `x.view(x.size(0), -1)` as Shape -> Gather -> Concat -> Reshape. ONNX
Runtime does not mind, but jaxonnxruntime refuses a Reshape shape that is not a
constant, and a traced PyTorch module freezes the sample batch size into it. Evaluated
symbolically (B for the batch size, ints from shape inference), such a shape is
[B, 64]; ONNX Reshape's 0 copies the input's dim, so [0, 64] says the same with no
run-time arithmetic. Shape computations this cannot evaluate are left as they are.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

BATCH = "B"
Sym = list[int | str]


def _dims(info: onnx.ValueInfoProto, batch: str) -> Sym | None:
    t = info.type.tensor_type
    if not t.HasField("shape"):
        return None
    out: Sym = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.dim_param == batch:
            out.append(BATCH)
        else:
            return None
    return out


def _ints(value: onnx.TensorProto) -> Sym | None:
    arr = numpy_helper.to_array(value)
    return [int(v) for v in arr.reshape(-1)] if arr.dtype.kind in "iu" and arr.ndim <= 1 else None


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _eval(node: onnx.NodeProto, syms: dict[str, Sym], dims: dict[str, Sym]) -> Sym | None:
    op, ins = node.op_type, list(node.input)
    if op == "Shape" and ins[0] in dims:
        shape = dims[ins[0]]
        return shape[_attr(node, "start", 0) : _attr(node, "end", len(shape))]
    if op == "Constant":
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        return _ints(value) if value is not None else None
    args = [syms.get(i) for i in ins]
    if op in ("Cast", "Identity", "Squeeze", "Unsqueeze", "Reshape") and args[0] is not None:
        return args[0] if len(args[0]) <= 1 or op in ("Cast", "Identity") else None
    if op == "Concat" and all(a is not None for a in args) and _attr(node, "axis", 0) == 0:
        return [x for a in args for x in a]  # type: ignore[union-attr]
    if (
        op == "Gather"
        and args[0] is not None
        and args[1] is not None
        and _attr(node, "axis", 0) == 0
        and all(isinstance(i, int) for i in args[1])
    ):
        return [args[0][int(i)] for i in args[1]]
    return None


def batch_shape(target: Sym, data: Sym) -> list[int] | None:
    """[B, ...] as a constant Reshape shape: -1 for the batch when every other dim is known
    (jaxonnxruntime cannot copy a symbolic dim with 0), else 0 (copy the input's dim)."""
    if target[0] != BATCH or data[0] != BATCH or target.count(BATCH) != 1:
        return None
    rest = target[1:]
    if rest.count(-1) == 1 and all(isinstance(d, int) for d in data[1:]):
        known = int(np.prod([d for d in rest if d != -1]))
        total = int(np.prod(data[1:]))  # type: ignore[arg-type]
        if known and total % known == 0:
            rest = [total // known if d == -1 else d for d in rest]
    if -1 in rest or 0 in rest:
        return [0, *rest]  # type: ignore[list-item]
    return [-1, *rest]  # type: ignore[list-item]


def constant_reshapes(model: onnx.ModelProto, batch: str = "batch") -> onnx.ModelProto:
    """A copy whose batch-derived Reshape shapes are constants with 0 for the batch dim."""
    if not any(n.op_type == "Shape" for n in model.graph.node):
        return model
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # an untyped graph keeps its Shape ops
        return model
    g = inferred.graph
    dims = {
        vi.name: d
        for vi in (*g.input, *g.value_info, *g.output)
        if (d := _dims(vi, batch)) is not None
    }
    syms: dict[str, Sym] = {i.name: s for i in g.initializer if (s := _ints(i)) is not None}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        value = _eval(node, syms, dims)
        if value is not None and node.output:
            syms[node.output[0]] = value
        if node.op_type != "Reshape" or _attr(node, "allowzero", 0):
            continue
        target, data = syms.get(node.input[1]), dims.get(node.input[0])
        shape = batch_shape(target, data) if target and data else None
        if shape is not None:
            name = f"{node.input[1]}_const"
            out.graph.initializer.append(
                numpy_helper.from_array(np.array(shape, dtype=np.int64), name)
            )
            node.input[1] = name
    return _prune(out)


def _prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drops the nodes no output depends on any more (the Shape chains replaced above)."""
    needed = {o.name for o in model.graph.output}
    live = []
    for node in reversed(model.graph.node):
        if needed.intersection(node.output):
            live.append(node)
            needed.update(node.input)
    del model.graph.node[:]
    model.graph.node.extend(live[::-1])
    return model

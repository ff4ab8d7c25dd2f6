"""ONNX, the common form: served names on the graph's inputs and outputs, and an opset
every downstream converter reads.

`normalize` renames the graph's inputs and outputs to the served names (in signature
order, free dims as named dim_params); `at_opset_17` brings a newer graph (the torch
dynamo exporter writes opset 18-20) down to 17 for onnx2torch, after dropping the two
attributes the version converter and onnx2torch trip on (see CONVERTERS.md).
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import helper, version_converter

from model_repo.importer.onnx_shapes import constant_reshapes
from model_repo.importer.signature import Signature, Spec

OPSET = 17


def opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def io_names(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """The graph's real inputs (initializers excluded) and outputs."""
    inits = {i.name for i in model.graph.initializer}
    return (
        [i.name for i in model.graph.input if i.name not in inits],
        [o.name for o in model.graph.output],
    )


def _value_info(spec: Spec) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(spec.dtype)
    dims: list[Any] = [
        ("batch" if j == 0 else f"{spec.name}_d{j}") if d == -1 else d
        for j, d in enumerate(spec.shape)
    ]
    return helper.make_tensor_value_info(spec.name, elem, dims)


def normalize(
    model: onnx.ModelProto,
    sig: Signature,
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
) -> onnx.ModelProto:
    """A copy whose graph inputs/outputs are the served names, typed as the signature.

    `inputs`/`outputs` are the graph's current names in signature order (default: the
    specs' source names).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    old_in = inputs or [s.source_name for s in sig.inputs]
    old_out = outputs or [s.source_name for s in sig.outputs]
    rename = dict(zip(old_in, [s.name for s in sig.inputs], strict=True))
    clash = set(rename.values()) & ({n for node in g.node for n in node.output} - set(old_out))
    if clash:
        raise ValueError(f"served names {sorted(clash)} are already used inside the graph")
    for node in g.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
    inits = [i for i in g.input if i.name not in rename]
    del g.input[:]
    g.input.extend([_value_info(s) for s in sig.inputs] + inits)
    # Outputs: an Identity from each old name, so names used inside the graph stay intact.
    del g.output[:]
    for spec, old in zip(sig.outputs, old_out, strict=True):
        src = rename.get(old, old)
        if src != spec.name:
            g.node.append(helper.make_node("Identity", [src], [spec.name]))
    g.output.extend([_value_info(s) for s in sig.outputs])
    out = constant_reshapes(_erfc_as_erf(out))
    onnx.checker.check_model(out)
    return out


def _erfc_as_erf(model: onnx.ModelProto) -> onnx.ModelProto:
    """tf2onnx writes TensorFlow's Erfc (Keras's exact GELU) as an `Erfc` node, which no
    ONNX opset has: 1 - Erf(x) instead."""
    if not any(n.op_type == "Erfc" and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return model
    g = model.graph
    one = "_erfc_one"
    g.initializer.append(helper.make_tensor(one, onnx.TensorProto.FLOAT, [], [1.0]))
    nodes: list[onnx.NodeProto] = []
    for i, n in enumerate(g.node):
        if n.op_type == "Erfc":
            erf = f"_erfc{i}_erf"
            nodes.append(helper.make_node("Erf", [n.input[0]], [erf]))
            nodes.append(helper.make_node("Sub", [one, erf], [n.output[0]]))
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return model


def decompose_gelu(model: onnx.ModelProto) -> onnx.ModelProto:
    """Gelu (opset 20, what torch's dynamo exporter writes) as Erf/Tanh arithmetic, which
    jaxonnxruntime and onnx2torch know and opset 17 has."""
    if not any(n.op_type == "Gelu" for n in model.graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    nodes: list[onnx.NodeProto] = []
    for i, n in enumerate(g.node):
        if n.op_type != "Gelu":
            nodes.append(n)
            continue
        tanh = any(a.name == "approximate" and a.s == b"tanh" for a in n.attribute)
        x, y, p = n.input[0], n.output[0], f"_gelu{i}_"

        def c(name: str, value: float, p: str = p) -> str:
            g.initializer.append(helper.make_tensor(p + name, onnx.TensorProto.FLOAT, [], [value]))
            return p + name

        if tanh:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            cube = [helper.make_node("Mul", [x, x], [p + "x2"]),
                    helper.make_node("Mul", [p + "x2", x], [p + "x3"]),
                    helper.make_node("Mul", [p + "x3", c("k", 0.044715)], [p + "kx3"]),
                    helper.make_node("Add", [x, p + "kx3"], [p + "in"]),
                    helper.make_node("Mul", [p + "in", c("s", 0.7978845608028654)], [p + "arg"]),
                    helper.make_node("Tanh", [p + "arg"], [p + "t"])]  # fmt: skip
        else:  # 0.5 x (1 + erf(x / sqrt(2)))
            cube = [helper.make_node("Mul", [x, c("s", 0.7071067811865476)], [p + "arg"]),
                    helper.make_node("Erf", [p + "arg"], [p + "t"])]  # fmt: skip
        nodes += [
            *cube,
            helper.make_node("Add", [p + "t", c("one", 1.0)], [p + "u"]),
            helper.make_node("Mul", [x, p + "u"], [p + "xu"]),
            helper.make_node("Mul", [p + "xu", c("half", 0.5)], [y]),
        ]
    del g.node[:]
    g.node.extend(nodes)
    return out


def at_opset_17(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph at opset 17 or below, for onnx2torch 1.5.15 (it lacks the opset-18 reduces).

    `noop_with_empty_axes=0` is the default, so dropping it changes nothing; Reshape's
    `allowzero=1` differs from 0 only for a 0 in the target shape, which no batch of at
    least one row has.
    """
    if opset(model) <= OPSET:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        keep = [
            a for a in node.attribute
            if not (a.name == "noop_with_empty_axes" and a.i == 0)
            and not (node.op_type == "Reshape" and a.name == "allowzero")
        ]  # fmt: skip
        del node.attribute[:]
        node.attribute.extend(keep)
    return version_converter.convert_version(out, OPSET)

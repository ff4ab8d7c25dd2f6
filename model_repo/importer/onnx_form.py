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
    onnx.checker.check_model(out)
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

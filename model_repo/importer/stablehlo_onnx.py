"""JAX -> ONNX: translates a `jax.export` artifact's StableHLO into an ONNX graph.

No maintained converter reads StableHLO (jax2onnx traces Python functions, and a
serialized artifact has no Python left), so this is written here for the ops that
inference graphs use (stablehlo_ops.py, stablehlo_shapes.py, stablehlo_nn.py); any
other op stops the conversion with `Unsupported` naming it. The walk inlines
`func.call`s and composites, takes the CPU branch of every `case` on the platform
index, and keeps the batch dim symbolic, so the graph serves every batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import ml_dtypes
import numpy as np
import onnx
from jax._src.interpreters import mlir as jax_mlir
from jaxlib.mlir import ir
from onnx import helper, numpy_helper

from model_repo.importer.onnx_form import OPSET
from model_repo.importer.signature import Signature, Spec

CONVERTER = "stablehlo->onnx"

_DTYPES: dict[str, Any] = {
    "f16": np.float16, "f32": np.float32, "f64": np.float64, "bf16": ml_dtypes.bfloat16,
    "i1": np.bool_, "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
    "ui8": np.uint8, "ui16": np.uint16, "ui32": np.uint32, "ui64": np.uint64,
}  # fmt: skip


class Unsupported(Exception):
    """An op (or an op's attribute) this translator does not handle."""


@dataclass
class Val:
    """An SSA value: an ONNX tensor name, a numpy constant known now, or both.

    `pending` marks a broadcast not done yet: `name` holds the operand with its rank
    aligned, and element-wise consumers let ONNX broadcasting finish the job; any other
    consumer materializes it (Expand to the `pending` shape tensor). `sym` is the content
    of a small integer shape tensor, with BATCH for the batch size: a reshape to it needs
    no shape arithmetic at run time (ONNX Reshape's 0 copies the input's batch dim), which
    keeps the graph free of Shape ops that a traced PyTorch module would freeze.
    """

    type: ir.Type
    name: str | None = None
    known: np.ndarray | None = None
    pending: Val | None = None
    sym: tuple[int | str, ...] | None = None

    @property
    def dtype(self) -> np.dtype[Any]:
        return element_dtype(self.type)

    @property
    def shape(self) -> list[int | None]:
        t = ir.RankedTensorType(self.type)
        dyn = ir.ShapedType.get_dynamic_size()
        return [None if d == dyn else d for d in t.shape]


def element_dtype(t: ir.Type) -> np.dtype[Any]:
    name = str(ir.RankedTensorType(t).element_type)
    if name not in _DTYPES:
        raise Unsupported(f"element type {name}")
    return np.dtype(_DTYPES[name])


def dense(attr: ir.Attribute) -> np.ndarray:
    """A dense elements attribute (splat or not) as a numpy array of its own type."""
    d = ir.DenseElementsAttr(attr)
    t = ir.RankedTensorType(d.type)
    dtype = element_dtype(d.type)
    if d.is_splat:
        v = d.get_splat_value()
        scalar = ir.FloatAttr(v).value if dtype.kind == "f" else ir.IntegerAttr(v).value
        return np.full(tuple(t.shape), scalar, dtype=dtype)
    if dtype == np.bool_:
        return np.array([bool(d[i]) for i in range(len(d))]).reshape(tuple(t.shape))
    return np.array(d, copy=True).astype(dtype).reshape(tuple(t.shape))


def ints(attr: ir.Attribute | None, default: Sequence[int] = ()) -> list[int]:
    """An i64 array attribute (dense array or dense elements) as a flat list."""
    if attr is None:
        return list(default)
    try:
        return [int(x) for x in ir.DenseI64ArrayAttr(attr)]
    except (ValueError, TypeError):
        return [int(x) for x in dense(attr).reshape(-1)]


class Graph:
    """The ONNX graph being built: nodes, initializers, fresh names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def fresh(self) -> str:
        self._n += 1
        return f"_shlo_{self._n}"

    def const(self, array: np.ndarray) -> str:
        name = self.fresh()
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = self.fresh()
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out


Handler = Callable[["Translator", Any, list[Val]], list[Val]]


class Translator:
    """Walks the module from @main, emitting ONNX nodes for each op through HANDLERS."""

    def __init__(self, module: ir.Module, platform_index: int) -> None:
        from model_repo.importer.stablehlo_nn import HANDLERS as NN
        from model_repo.importer.stablehlo_ops import HANDLERS as OPS
        from model_repo.importer.stablehlo_shapes import HANDLERS as SHAPES

        self.handlers: dict[str, Handler] = {**OPS, **SHAPES, **NN}
        self.g = Graph()
        self.platform_index = platform_index
        self.env: dict[Any, Val] = {}
        self.funcs = {
            ir.StringAttr(op.attributes["sym_name"]).value: op
            for op in module.body.operations
            if op.operation.name == "func.func"
        }

    def name(self, v: Val) -> str:
        """The ONNX name of `v` in its full shape (known constants become initializers)."""
        if v.pending is not None:
            shape = self.g.node("Cast", [self.name(v.pending)], to=onnx.TensorProto.INT64)
            v.name, v.pending = self.g.node("Expand", [self.bname(v), shape]), None
        return self.bname(v)

    def bname(self, v: Val) -> str:
        """The ONNX name of `v` for an element-wise consumer (a pending broadcast stays so)."""
        if v.name is None:
            assert v.known is not None
            v.name = self.g.const(v.known)
        return v.name

    def elementwise(self, op: Any, onnx_op: str, ins: list[Val], **attrs: Any) -> Val:
        """One ONNX node over `ins` with broadcasting; pending only if every input is."""
        out = Val(
            op.results[0].type, name=self.g.node(onnx_op, [self.bname(v) for v in ins], **attrs)
        )
        if ins and all(v.pending is not None for v in ins):
            out.pending = ins[0].pending
        return out

    def out(self, op: Any, name: str, i: int = 0) -> Val:
        return Val(op.results[i].type, name=name)

    def call(self, func_name: str, args: list[Val]) -> list[Val]:
        func = self.funcs.get(func_name)
        if func is None:
            raise Unsupported(f"call to unknown function @{func_name}")
        return self.block(func.regions[0].blocks[0], args, {})

    def block(self, block: Any, args: list[Val], outer: dict[Any, Val]) -> list[Val]:
        """Runs one block's ops; returns its terminator's operands."""
        env = dict(outer)
        env.update(zip(block.arguments, args, strict=True))
        for op in block.operations:
            o = op.operation
            ins = [env[v] for v in o.operands]
            if o.name in ("func.return", "stablehlo.return"):
                return ins
            handler = self.handlers.get(o.name)
            if handler is None:
                raise Unsupported(o.name)
            self.env = env  # a case's branches see this scope (see `region`)
            results = handler(self, o, ins)
            env.update(zip(o.results, results, strict=True))
        raise Unsupported("a block without a terminator")

    def region(self, op: Any, index: int, args: list[Val]) -> list[Val]:
        """Inlines one region of `op` (a case branch) in the enclosing scope."""
        return self.block(op.regions[index].blocks[0], args, self.env)


def to_onnx(exported: jax.export.Exported, sig: Signature) -> onnx.ModelProto:
    """The artifact as an ONNX model whose graph inputs/outputs are the served names."""
    platforms = [p.lower() for p in exported.platforms]
    platform_index = platforms.index("cpu") if "cpu" in platforms else 0
    with jax_mlir.make_ir_context():
        module = ir.Module.parse(exported.mlir_module())
        tr = Translator(module, platform_index)
        main = tr.funcs["main"]
        arg_attrs = (
            list(ir.ArrayAttr(main.attributes["arg_attrs"]))
            if "arg_attrs" in main.attributes
            else []
        )
        block = main.regions[0].blocks[0]
        kept = iter(exported.module_kept_var_idx)
        args: list[Val] = []
        for i, arg in enumerate(block.arguments):
            attrs = ir.DictAttr(arg_attrs[i]) if i < len(arg_attrs) else None
            if attrs is not None and "jax.global_constant" in attrs:
                args.append(Val(arg.type, known=np.array(platform_index, dtype=np.int32)))
            else:
                args.append(Val(arg.type, name=sig.inputs[next(kept)].name))
        results = tr.block(block, args, {})
        for spec, v in zip(sig.outputs, results, strict=True):
            tr.g.nodes.append(helper.make_node("Identity", [tr.name(v)], [spec.name]))
    nodes = _live(tr.g.nodes, [s.name for s in sig.outputs])
    used = {name for n in nodes for name in n.input}
    graph = helper.make_graph(
        _live(tr.g.nodes, [s.name for s in sig.outputs]),
        "jax_export",
        [_info(s) for s in sig.inputs],
        [_info(s) for s in sig.outputs],
        initializer=[i for i in tr.g.inits if i.name in used],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def _live(nodes: list[onnx.NodeProto], outputs: list[str]) -> list[onnx.NodeProto]:
    """The nodes the outputs depend on (shape assertions leave dead compares behind)."""
    needed = set(outputs)
    live = []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            live.append(node)
            needed.update(node.input)
    return live[::-1]


def _info(spec: Spec) -> onnx.ValueInfoProto:
    dims: list[Any] = ["batch" if (d == -1 and j == 0) else d for j, d in enumerate(spec.shape)]
    return helper.make_tensor_value_info(
        spec.name, helper.np_dtype_to_tensor_dtype(spec.dtype), dims
    )

"""ONNX exporter: the network as an ONNX graph built with onnx.helper (opset 17)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gateway.config import ModelConfig
from model_repo.builders.networks import MLP, ResNet

OPSET = 17


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], out: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


def _mlp(g: _Graph, net: MLP, x: str, y: str) -> None:
    h = x
    for i, (w, b) in enumerate(net.layers):
        last = i == len(net.layers) - 1
        z = g.node("Gemm", [h, g.const(f"w{i}", w), g.const(f"b{i}", b)], y if last else f"z{i}")
        h = z if last else g.node("Relu", [z], f"h{i}")


def _resnet(g: _Graph, net: ResNet, x: str, y: str) -> None:
    def conv(name: str, inp: str) -> str:
        c = net.convs[name]
        k = c.w.shape[2]
        return g.node(
            "Conv",
            [inp, g.const(f"{name}.w", c.w), g.const(f"{name}.b", c.b)],
            f"{name}.out",
            kernel_shape=[k, k],
            strides=[c.stride, c.stride],
            pads=[c.pad] * 4,
        )

    h = g.node("Relu", [conv("stem", x)], "stem.relu")
    h = g.node("MaxPool", [h], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    for prefix, down in net.blocks():
        r = g.node("Relu", [conv(f"{prefix}c1", h)], f"{prefix}.r1")
        r = conv(f"{prefix}c2", r)
        shortcut = conv(f"{prefix}down", h) if down else h
        h = g.node("Relu", [g.node("Add", [r, shortcut], f"{prefix}.add")], f"{prefix}.out")
    h = g.node("Flatten", [g.node("GlobalAveragePool", [h], "gap")], "flat")
    g.node("Gemm", [h, g.const("fc_w", net.fc_w), g.const("fc_b", net.fc_b)], y)


def export(network: MLP | ResNet, model: ModelConfig, out: Path) -> None:
    """Writes `out` (model.onnx) with the model's signature names and a free batch dim."""
    (inp,) = model.signature.inputs
    (outp,) = model.signature.outputs
    g = _Graph()
    if isinstance(network, ResNet):
        _resnet(g, network, inp.name, outp.name)
    else:
        _mlp(g, network, inp.name, outp.name)

    def dims(shape: tuple[int, ...]) -> list[int | str]:
        return ["batch" if d == -1 else d for d in shape]

    graph = helper.make_graph(
        g.nodes,
        model.name,
        [helper.make_tensor_value_info(inp.name, TensorProto.FLOAT, dims(inp.shape))],
        [helper.make_tensor_value_info(outp.name, TensorProto.FLOAT, dims(outp.shape))],
        initializer=g.inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 9
    onnx.checker.check_model(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))

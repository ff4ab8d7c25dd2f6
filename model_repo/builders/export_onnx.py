"""ONNX exporter: the network as an ONNX graph built with onnx.helper (opset 17)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gateway.config import ModelConfig
from model_repo.builders.networks import MLP

OPSET = 17


def export(network: MLP, model: ModelConfig, out: Path) -> None:
    """Writes `out` (model.onnx) with the model's signature names and a free batch dim."""
    (inp,) = model.signature.inputs
    (outp,) = model.signature.outputs
    nodes, inits = [], []
    h = inp.name
    for i, (w, b) in enumerate(network.layers):
        inits += [
            numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
            numpy_helper.from_array(b.astype(np.float32), f"b{i}"),
        ]
        last = i == len(network.layers) - 1
        y = outp.name if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [h, f"w{i}", f"b{i}"], [y if last else f"z{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [y]))
        h = y
    graph = helper.make_graph(
        nodes,
        model.name,
        [helper.make_tensor_value_info(inp.name, TensorProto.FLOAT, ["batch", inp.shape[1]])],
        [helper.make_tensor_value_info(outp.name, TensorProto.FLOAT, ["batch", outp.shape[1]])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 9
    onnx.checker.check_model(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))

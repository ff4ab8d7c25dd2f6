"""PyTorch sources: a TorchScript file, or a `torch.export` ExportedProgram (.pt2).

TorchScript records argument names but no shapes or dtypes (hence --input-shape); an
ExportedProgram records both, with its dynamic dims as symbols. Both go to ONNX with
torch's own exporters: TorchScript through the TorchScript-based exporter at opset 17
(`dynamo=False`), an ExportedProgram through the dynamo exporter, the only one that
keeps its symbolic batch dim (tracing `ep.module()` bakes the batch size into views).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from model_repo.importer.onnx_form import OPSET
from model_repo.importer.signature import Signature, datatype, make_specs
from model_repo.importer.sources import Arrays


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """torch 2.13 marks torch.jit deprecated and the exporters warn at length; the parity
    check, not the warnings, says whether a conversion is right."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def tensors(sig: Signature, inputs: Arrays) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(inputs[s.name])) for s in sig.inputs]


def flat_outputs(result: Any) -> list[np.ndarray]:
    """A module's result (tensor, tuple, list or dict of tensors) as arrays in order."""
    if isinstance(result, torch.Tensor):
        return [result.detach().cpu().numpy()]
    if isinstance(result, dict):
        result = list(result.values())
    return [r for item in result for r in flat_outputs(item)]


def dynamic_axes(sig: Signature) -> dict[str, dict[int, str]]:
    return {s.name: {0: "batch"} for s in (*sig.inputs, *sig.outputs) if s.shape[:1] == (-1,)}


class TorchScriptSource:
    kind = "torchscript"

    def __init__(self, path: Path) -> None:
        self.path = path
        with quiet():
            self.module = torch.jit.load(str(path), map_location="cpu").eval()

    def signature(self) -> Signature:
        args = self.module.forward.schema.arguments[1:]  # [0] is self
        return Signature(make_specs([(a.name, "FP32", None) for a in args], "input"), ())

    def run(self, sig: Signature, inputs: Arrays) -> list[np.ndarray]:
        with quiet(), torch.inference_mode():
            return flat_outputs(self.module(*tensors(sig, inputs)))

    def to_onnx(self, sig: Signature, inputs: Arrays) -> onnx.ModelProto:
        with quiet():
            return _export_legacy(self.module, sig, inputs)


def _export_legacy(module: Any, sig: Signature, inputs: Arrays) -> onnx.ModelProto:
    import io

    buf = io.BytesIO()
    torch.onnx.export(
        module,
        tuple(tensors(sig, inputs)),
        buf,
        dynamo=False,
        opset_version=OPSET,
        input_names=[s.name for s in sig.inputs],
        output_names=[s.name for s in sig.outputs],
        dynamic_axes=dynamic_axes(sig),
    )
    return onnx.load_from_string(buf.getvalue())


class ExportedProgramSource:
    kind = "torch_export"

    def __init__(self, path: Path) -> None:
        self.path = path
        with quiet():
            self.program = torch.export.load(str(path))
        self._module: Any = None

    def signature(self) -> Signature:
        user = set(self.program.graph_signature.user_inputs)
        raw = []
        for node in self.program.graph.nodes:
            if node.op == "placeholder" and node.name in user:
                raw.append((node.name, *_spec_of(node.meta.get("val"))))
        out_node = next(n for n in self.program.graph.nodes if n.op == "output")
        results = out_node.args[0]
        results = results if isinstance(results, tuple | list) else (results,)
        user_out = set(self.program.graph_signature.user_outputs)
        outs = [("", *_spec_of(r.meta.get("val"))) for r in results if r.name in user_out]
        return Signature(make_specs(raw, "input"), make_specs(outs, "output"))

    def run(self, sig: Signature, inputs: Arrays) -> list[np.ndarray]:
        if self._module is None:
            self._module = self.program.module()
        with quiet(), torch.inference_mode():
            return flat_outputs(self._module(*tensors(sig, inputs)))

    def to_onnx(self, sig: Signature, inputs: Arrays) -> onnx.ModelProto:
        with quiet():
            program = torch.onnx.export(self.program, dynamo=True, verbose=False)
        assert program is not None
        return program.model_proto


def _spec_of(val: Any) -> tuple[str, tuple[int, ...] | None]:
    """(datatype, shape) of a FakeTensor: symbolic dims become -1."""
    if not isinstance(val, torch.Tensor):
        return "FP32", None
    dtype = torch.empty(0, dtype=val.dtype).numpy().dtype
    shape = tuple(d if isinstance(d, int) else -1 for d in val.shape)
    return datatype(dtype), shape

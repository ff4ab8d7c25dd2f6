"""ONNX source: the signature from the graph's inputs and outputs, ONNX Runtime as the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from model_repo.importer.onnx_form import io_names
from model_repo.importer.signature import Signature, datatype, make_specs
from model_repo.importer.sources import Arrays, SourceError


def _specs(infos: list[onnx.ValueInfoProto]) -> list[tuple[str, str, tuple[int, ...] | None]]:
    raw = []
    for vi in infos:
        t = vi.type.tensor_type
        dt = datatype(helper.tensor_dtype_to_np_dtype(t.elem_type))
        shape = (
            tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                  for d in t.shape.dim)
            if t.HasField("shape") else None
        )  # fmt: skip
        raw.append((vi.name, dt, shape))
    return raw


class OnnxSource:
    kind = "onnx"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.model = onnx.load(str(path))
        except Exception as exc:
            raise SourceError(f"{path}: not an ONNX model ({exc})") from None
        if not self.model.graph.output or not self.model.graph.node:
            raise SourceError(f"{path}: not an ONNX model (no graph)")
        self._session: object | None = None

    def signature(self) -> Signature:
        ins, _ = io_names(self.model)
        by_name = {vi.name: vi for vi in self.model.graph.input}
        return Signature(
            make_specs(_specs([by_name[n] for n in ins]), "input"),
            make_specs(_specs(list(self.model.graph.output)), "output"),
        )

    def run(self, sig: Signature, inputs: Arrays) -> list[np.ndarray]:
        import onnxruntime as ort

        if self._session is None:
            self._session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        session: ort.InferenceSession = self._session  # type: ignore[assignment]
        feed = {s.source_name: inputs[s.name] for s in sig.inputs}
        return list(session.run([o.name for o in self.model.graph.output], feed))

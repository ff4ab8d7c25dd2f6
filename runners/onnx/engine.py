"""ONNX Runtime engine: CUDA execution provider when it loads, CPU otherwise.

"On the GPU or not" is read from `session.get_providers()` after the session exists:
onnxruntime-gpu lists CUDA as available even where it cannot load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gateway.config import ModelConfig, VariantConfig
from runners.host import Predict


class OnnxEngine:
    kind = "onnx"
    platform = "onnx_onnxv1"

    def __init__(self) -> None:
        self._providers: list[str] = []

    def load(self, model: ModelConfig, variant: VariantConfig, artifact: Path) -> Predict:
        opts = ort.SessionOptions()
        # Threads: the model.yaml setting, else every core (big models); small models set 1.
        opts.intra_op_num_threads = int(
            variant.settings.get("intra_op_threads", os.cpu_count() or 1)
        )
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        wanted = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]
        session = ort.InferenceSession(
            str(artifact), sess_options=opts, providers=[*wanted, "CPUExecutionProvider"]
        )
        self._providers = session.get_providers()
        output_names = [o.name for o in session.get_outputs()]

        def predict(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
            results = session.run(output_names, dict(inputs))
            return dict(zip(output_names, results, strict=True))

        return predict

    def device(self) -> str:
        return "cuda" if "CUDAExecutionProvider" in self._providers else "cpu"

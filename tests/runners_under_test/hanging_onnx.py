"""`python -m tests.runners_under_test.hanging_onnx`: our real onnx runner, except that its
model call never returns for a poisoned input (a NaN anywhere in the batch: the gateway
may stack the poisoned request behind others).

This is the "model handler that never returns" of the resilience tests: the process lives,
only inference hangs (in the model thread, or on the event loop itself when the host had
found this shape fast enough to call there). Everything else is the real runner host and
ONNX Runtime.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gateway.config import ModelConfig, VariantConfig
from runners.host import Predict, main
from runners.onnx.engine import OnnxEngine


class HangingEngine(OnnxEngine):
    def load(self, model: ModelConfig, variant: VariantConfig, artifact: Path) -> Predict:
        predict = super().load(model, variant, artifact)

        def hanging(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
            first = next(iter(inputs.values()))
            if np.isnan(first).any():
                threading.Event().wait()  # forever
            return predict(inputs)

        return hanging


if __name__ == "__main__":
    main(HangingEngine)

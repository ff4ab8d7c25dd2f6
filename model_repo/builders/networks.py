"""The framework-neutral networks every exporter reads: weights as numpy, plus a reference.

The numpy forward pass is the reference that the parity tests hold each variant to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEIGHTS_FILE = "weights.npz"


@dataclass(frozen=True)
class MLP:
    """Dense layers with ReLU between them; `layers[i] = (W [in, out], b [out])`."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = x.astype(np.float64)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.astype(np.float64) + b.astype(np.float64)
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h.astype(np.float32)

    def save(self, folder: Path) -> None:
        arrays = {}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"] = w.astype(np.float32)
            arrays[f"b{i}"] = b.astype(np.float32)
        np.savez(folder / WEIGHTS_FILE, kind=np.array("mlp"), **arrays)

    @classmethod
    def load(cls, folder: Path) -> MLP:
        with np.load(folder / WEIGHTS_FILE) as f:
            n = sum(1 for k in f.files if k.startswith("w"))
            return cls(tuple((f[f"w{i}"], f[f"b{i}"]) for i in range(n)))

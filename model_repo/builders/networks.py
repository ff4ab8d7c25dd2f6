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


@dataclass(frozen=True)
class Conv:
    """A convolution with batch norm folded in: `w` [out, in, k, k], `b` [out], NCHW."""

    w: np.ndarray
    b: np.ndarray
    stride: int
    pad: int


# (stage, block) layout of ResNet-18: four stages of two basic blocks.
RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))


@dataclass(frozen=True)
class ResNet:
    """ResNet-18-shaped CNN, NCHW, batch norm folded into the convs (inference form).

    `convs` maps names to Conv: "stem", then "s{stage}b{block}c1", "s{stage}b{block}c2"
    and "s{stage}b0down" for the projection shortcut of each downsampling stage.
    Forward: stem conv 7x7/2 -> ReLU -> max pool 3x3/2 (pad 1) -> 8 basic blocks ->
    global average pool -> fc.
    """

    convs: dict[str, Conv]
    fc_w: np.ndarray  # [512, classes]
    fc_b: np.ndarray  # [classes]

    @staticmethod
    def blocks() -> list[tuple[str, bool]]:
        """(block prefix, has projection shortcut) in forward order."""
        out = []
        for s, (_, stride) in enumerate(RESNET18_STAGES):
            for b in range(2):
                out.append((f"s{s}b{b}", b == 0 and stride != 1))
        return out

    @classmethod
    def seeded(cls, seed: int = 0, classes: int = 1000) -> ResNet:
        """He-initialised weights, scaled so activations stay O(1) through the residuals."""
        rng = np.random.default_rng(seed)

        def conv(cin: int, cout: int, k: int, stride: int, gain: float = 1.0) -> Conv:
            std = gain * np.sqrt(2.0 / (cin * k * k))
            w = rng.normal(0.0, std, (cout, cin, k, k)).astype(np.float32)
            b = rng.normal(0.0, 0.01, cout).astype(np.float32)
            return Conv(w, b, stride, k // 2)

        convs = {"stem": conv(3, 64, 7, 2)}
        cin = 64
        for s, (cout, stride) in enumerate(RESNET18_STAGES):
            for b in range(2):
                st = stride if b == 0 else 1
                convs[f"s{s}b{b}c1"] = conv(cin, cout, 3, st)
                convs[f"s{s}b{b}c2"] = conv(cout, cout, 3, 1, gain=0.5)
                if b == 0 and stride != 1:
                    convs[f"s{s}b{b}down"] = conv(cin, cout, 1, stride, gain=0.5)
                cin = cout
        fc_w = rng.normal(0.0, np.sqrt(1.0 / 512), (512, classes)).astype(np.float32)
        fc_b = np.zeros(classes, dtype=np.float32)
        return cls(convs, fc_w, fc_b)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The float64 numpy reference (slow: about a second per image)."""
        h = np.maximum(_conv(x.astype(np.float64), self.convs["stem"]), 0.0)
        h = _maxpool3x3s2(h)
        for prefix, down in self.blocks():
            y = np.maximum(_conv(h, self.convs[f"{prefix}c1"]), 0.0)
            y = _conv(y, self.convs[f"{prefix}c2"])
            shortcut = _conv(h, self.convs[f"{prefix}down"]) if down else h
            h = np.maximum(y + shortcut, 0.0)
        pooled = h.mean(axis=(2, 3))
        return (pooled @ self.fc_w.astype(np.float64) + self.fc_b).astype(np.float32)

    def save(self, folder: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "kind": np.array("resnet"),
            "fc_w": self.fc_w,
            "fc_b": self.fc_b,
        }
        for name, c in self.convs.items():
            arrays[f"{name}.w"] = c.w
            arrays[f"{name}.b"] = c.b
            arrays[f"{name}.meta"] = np.array([c.stride, c.pad])
        np.savez(folder / WEIGHTS_FILE, **arrays)

    @classmethod
    def load(cls, folder: Path) -> ResNet:
        with np.load(folder / WEIGHTS_FILE) as f:
            names = sorted({k.rsplit(".", 1)[0] for k in f.files if k.endswith(".w")})
            convs = {
                n: Conv(f[f"{n}.w"], f[f"{n}.b"], int(f[f"{n}.meta"][0]), int(f[f"{n}.meta"][1]))
                for n in names
            }
            return cls(convs, f["fc_w"], f["fc_b"])


def _conv(x: np.ndarray, c: Conv) -> np.ndarray:
    """NCHW convolution by im2col + matmul."""
    _, _, h, w = x.shape
    k = c.w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (c.pad, c.pad), (c.pad, c.pad)))
    ho = (h + 2 * c.pad - k) // c.stride + 1
    wo = (w + 2 * c.pad - k) // c.stride + 1
    cols = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    cols = cols[:, :, :: c.stride, :: c.stride][:, :, :ho, :wo]  # n, cin, ho, wo, k, k
    out = np.einsum("nchwij,ocij->nohw", cols, c.w.astype(np.float64), optimize=True)
    return out + c.b.astype(np.float64)[None, :, None, None]


def _maxpool3x3s2(x: np.ndarray) -> np.ndarray:
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    ho = (x.shape[2] + 2 - 3) // 2 + 1
    wo = (x.shape[3] + 2 - 3) // 2 + 1
    return win[:, :, :ho, :wo].max(axis=(4, 5))


def load_network(folder: Path) -> MLP | ResNet:
    """Whichever network the weights file holds."""
    with np.load(folder / WEIGHTS_FILE) as f:
        kind = str(f["kind"])
    return ResNet.load(folder) if kind == "resnet" else MLP.load(folder)

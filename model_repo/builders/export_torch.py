"""PyTorch exporter: the network as a torch nn.Module -> frozen TorchScript -> model.mar.

Built natively in torch from the reference weights (NCHW, as networks.py keeps them), then
`torch.jit.script` + `torch.jit.freeze`, checked against the version's samples.npz
logits, and archived for TorchServe with runners/torchserve/archive.py (our handler and
the framing go inside the .mar).
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gateway.config import ModelConfig
from model_repo.builders.networks import MLP, Conv, ResNet
from runners.torchserve import archive

# Largest |torch - float64 reference| accepted on the sample logits, per network kind.
# ResNet: 20 float32 convolutions (im2col/oneDNN summation order) vs float64.
TOLERANCE = {"mlp": 1e-4, "resnet": 1e-3}


class TorchMLP(nn.Module):
    """Dense layers with ReLU between them."""

    def __init__(self, net: MLP) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (w, b) in enumerate(net.layers):
            linear = nn.Linear(w.shape[0], w.shape[1])
            linear.weight.data = torch.from_numpy(np.ascontiguousarray(w.T, dtype=np.float32))
            linear.bias.data = torch.from_numpy(b.astype(np.float32))
            layers.append(linear)
            if i < len(net.layers) - 1:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _conv(c: Conv) -> nn.Conv2d:
    out_ch, in_ch, k, _ = c.w.shape
    conv = nn.Conv2d(in_ch, out_ch, k, stride=c.stride, padding=c.pad, bias=True)
    conv.weight.data = torch.from_numpy(c.w.astype(np.float32))
    conv.bias.data = torch.from_numpy(c.b.astype(np.float32))
    return conv


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut (a 1x1 projection where the block downsamples)."""

    def __init__(self, c1: nn.Conv2d, c2: nn.Conv2d, shortcut: nn.Module) -> None:
        super().__init__()
        self.c1, self.c2, self.shortcut = c1, c2, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c2(torch.relu(self.c1(x)))
        return torch.relu(y + self.shortcut(x))


class TorchResNet(nn.Module):
    """ResNet-18 shape as networks.ResNet.forward: stem, max pool, 8 blocks, GAP, fc."""

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.stem = _conv(net.convs["stem"])
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.blocks = nn.Sequential(
            *(
                BasicBlock(
                    _conv(net.convs[f"{p}c1"]),
                    _conv(net.convs[f"{p}c2"]),
                    _conv(net.convs[f"{p}down"]) if down else nn.Identity(),
                )
                for p, down in net.blocks()
            )
        )
        self.fc = nn.Linear(net.fc_w.shape[0], net.fc_w.shape[1])
        self.fc.weight.data = torch.from_numpy(np.ascontiguousarray(net.fc_w.T, dtype=np.float32))
        self.fc.bias.data = torch.from_numpy(net.fc_b.astype(np.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.stem(x)))
        h = self.blocks(h)
        return self.fc(h.mean(dim=(2, 3)))


def to_torchscript(network: MLP | ResNet) -> torch.jit.ScriptModule:
    """The network as a frozen TorchScript module (float32, eval mode)."""
    module = TorchResNet(network) if isinstance(network, ResNet) else TorchMLP(network)
    with _jit_deprecation_quiet():
        return torch.jit.freeze(torch.jit.script(module.eval()))


@contextlib.contextmanager
def _jit_deprecation_quiet() -> Iterator[None]:
    """torch 2.13 marks torch.jit deprecated (for torch.export); it still works, and
    TorchScript is what TorchServe archives carry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def check_samples(module: torch.jit.ScriptModule, samples: Path, tolerance: float) -> float:
    """Max |module - reference| on the samples' logits; raises above `tolerance`."""
    with np.load(samples) as f:
        inputs, logits = f["inputs"], f["logits"]
    with torch.inference_mode():
        got = module(torch.from_numpy(inputs.astype(np.float32))).numpy()
    diff = float(np.abs(got - logits).max())
    if not diff <= tolerance:
        raise ValueError(f"TorchScript output differs from the reference by {diff} > {tolerance}")
    return diff


def export(network: MLP | ResNet, model: ModelConfig, out: Path) -> None:
    """Writes `out` (<version>/model.mar) for the model's torchserve variant."""
    settings = next(
        (
            v.settings
            for v in model.variants.values()
            if v.runner == "torchserve" and v.artifact == out.name
        ),
        {},
    )
    module = to_torchscript(network)
    kind = "resnet" if isinstance(network, ResNet) else "mlp"
    samples = out.parent / "samples.npz"
    if samples.exists():
        diff = check_samples(module, samples, TOLERANCE[kind])
        print(f"{model.name}: TorchScript vs reference logits, max |diff| = {diff:.3g}")
    with tempfile.TemporaryDirectory(prefix="servegate-torch-") as tmp:
        serialized = Path(tmp) / "model.pt"
        with _jit_deprecation_quiet():
            torch.jit.save(module, str(serialized))
        archive.archive(
            serialized,
            out,
            name=model.name,
            version=out.parent.name,
            inputs=[s.name for s in model.signature.inputs],
            outputs=[s.name for s in model.signature.outputs],
            settings=settings,
        )

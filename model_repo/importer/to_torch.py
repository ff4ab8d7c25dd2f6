"""ONNX -> PyTorch: onnx2torch builds an nn.Module, `torch.jit.trace` + `freeze` make the
TorchScript that our TorchServe handler loads, and runners/torchserve/archive.py puts it in
a .mar with the handler (model_repo/builders/export_torch.py's layout).

onnx2torch imports torchvision for two converters (NonMaxSuppression, RoiAlign), and
PyPI's torchvision is built against CUDA torch: `import torchvision` fails beside the CPU
torch here. So onnx2torch is imported with a placeholder torchvision that exists only
during that import, and those two converters are unregistered afterwards: a graph with
either op fails with onnx2torch's own "Converter is not implemented" naming it.
"""

from __future__ import annotations

import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from model_repo.importer.onnx_form import at_opset_17
from model_repo.importer.signature import Signature
from model_repo.importer.source_torch import flat_outputs, quiet, tensors

NEEDS_TORCHVISION = ("NonMaxSuppression", "RoiAlign")
DEFAULT_SETTINGS = {"batch_size": 1}


@contextmanager
def _placeholder_torchvision() -> Iterator[None]:
    def unavailable(*_: Any, **__: Any) -> Any:
        raise NotImplementedError("torchvision is not installed (CUDA-only wheels on PyPI)")

    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unavailable  # type: ignore[attr-defined]
    tv = types.ModuleType("torchvision")
    tv.ops = ops  # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.ops")}
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _onnx2torch() -> Any:
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    with _placeholder_torchvision():
        import onnx2torch
        from onnx2torch.node_converters import registry
    for key in [k for k in registry._CONVERTER_REGISTRY if k.operation_type in NEEDS_TORCHVISION]:
        del registry._CONVERTER_REGISTRY[key]
    return onnx2torch


def from_onnx(
    model: onnx.ModelProto, sig: Signature, inputs: dict[str, np.ndarray]
) -> torch.jit.ScriptModule:
    """The graph as frozen TorchScript, traced on the sample batch."""
    module = _onnx2torch().convert(at_opset_17(model)).eval()
    with quiet():
        traced = torch.jit.trace(module, tuple(tensors(sig, inputs)), check_trace=False)
        return torch.jit.freeze(traced.eval())


def save(module: torch.jit.ScriptModule, path: Path) -> None:
    with quiet():
        torch.jit.save(module, str(path))


def archive(serialized: Path, out: Path, *, name: str, version: str, sig: Signature) -> None:
    """The .mar for TorchServe: the TorchScript file, our handler, the framing."""
    from runners.torchserve import archive as mar

    mar.archive(
        serialized,
        out,
        name=name,
        version=version,
        inputs=[s.name for s in sig.inputs],
        outputs=[s.name for s in sig.outputs],
        settings=DEFAULT_SETTINGS,
    )


def loader(path: Path, sig: Signature) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """The TorchScript file as the handler runs it (torch.jit.load, inference mode)."""
    with quiet():
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        with quiet(), torch.inference_mode():
            return flat_outputs(module(*tensors(sig, inputs)))

    return run


def scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="servegate-import-torch-")

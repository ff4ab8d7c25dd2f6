"""What a SOURCE path is, and the one interface every source format offers the pipeline.

A source knows its signature (as far as the format records it), runs itself on sample
inputs (the reference every variant is held to) and converts itself to ONNX, the common
form the other frameworks are produced from.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Protocol

import numpy as np

from model_repo.importer.signature import Signature

Arrays = dict[str, np.ndarray]

# source kind -> the variant it already is
FRAMEWORK = {
    "onnx": "onnx",
    "torchscript": "pytorch",
    "torch_export": "pytorch",
    "savedmodel": "tensorflow",
    "jax_export": "jax",
}
JAX_SUFFIXES = (".jax", ".jaxexport", ".stablehlo")


class SourceError(ValueError):
    """SOURCE is missing, or is not a model in one of the four formats."""


class Source(Protocol):
    kind: str
    path: Path

    def signature(self) -> Signature:
        """Names, datatypes and shapes as the format records them (-1: dynamic)."""
        ...

    def run(self, sig: Signature, inputs: Arrays) -> list[np.ndarray]:
        """The outputs, in the source's order, for inputs keyed by served name."""
        ...


def detect(path: Path) -> str:
    """The source kind, from the path's layout and the file's first bytes."""
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise SourceError(f"{path}: a folder but not a TensorFlow SavedModel (no saved_model.pb)")
    if path.suffix == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("serialized_exported_program.json") or "/models/" in n for n in names):
            return "torch_export"
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        raise SourceError(
            f"{path}: a zip archive but neither TorchScript nor a torch.export program "
            "(a state_dict or pickled module cannot be imported: torch.jit.script/trace it, "
            "or torch.export.export it and torch.export.save the program)"
        )
    if path.suffix in JAX_SUFFIXES:
        return "jax_export"
    return "unknown"


def load(path: Path) -> Source:
    """The source object for `path`; SourceError when it does not load."""
    kind = detect(path)
    if kind == "unknown":  # no telling suffix: ONNX if it parses as one, else jax.export
        for guess in ("onnx", "jax_export"):
            try:
                return _load(guess, path)
            except Exception:
                continue
        raise SourceError(
            f"{path}: not a model: neither ONNX, TorchScript, a torch.export program (.pt2), "
            "a SavedModel folder nor a serialized jax.export artifact"
        )
    try:
        return _load(kind, path)
    except SourceError:
        raise
    except Exception as exc:  # each loader has its own error types
        raise SourceError(
            f"{path}: does not load as {kind} ({type(exc).__name__}: {exc})"
        ) from None


def _load(kind: str, path: Path) -> Source:
    if kind == "onnx":
        from model_repo.importer.source_onnx import OnnxSource

        return OnnxSource(path)
    if kind == "torchscript":
        from model_repo.importer.source_torch import TorchScriptSource

        return TorchScriptSource(path)
    if kind == "torch_export":
        from model_repo.importer.source_torch import ExportedProgramSource

        return ExportedProgramSource(path)
    if kind == "savedmodel":
        from model_repo.importer.source_tf import SavedModelSource

        return SavedModelSource(path)
    from model_repo.importer.source_jax import JaxExportSource

    return JaxExportSource(path)

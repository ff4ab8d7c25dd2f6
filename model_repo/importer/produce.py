"""Builds each variant's artifact from the source, through the forms it needs, and names
the converter path it took.

The forms are made once and shared: ONNX (the common form) feeds the jax and pytorch
variants, the jax form feeds the tensorflow one. A form that cannot be made fails every
variant that needs it, with its reason; the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_repo.importer.signature import Signature
from model_repo.importer.sources import Arrays, Source

Runner = Callable[[Arrays], list[np.ndarray]]


class FormError(RuntimeError):
    """An intermediate form failed; the message names the converter and what stopped it."""


@dataclass
class Forms:
    """The source, its served signature, the sample inputs, and the forms made so far."""

    source: Source
    sig: Signature
    inputs: Arrays
    work: Path
    made: dict[str, tuple[Any, str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def upstream(self, form: str) -> tuple[Any, str]:
        """`get` for a form another variant needs: its failure says so."""
        try:
            return self.get(form)
        except FormError as exc:
            raise FormError(f"needs the {form} form, which failed: {exc}") from None

    def get(self, form: str) -> tuple[Any, str]:
        """(the form, the converter path that made it); FormError if it cannot be made."""
        if form in self.failed:
            raise FormError(self.failed[form])
        if form not in self.made:
            try:
                self.made[form] = MAKERS[form](self)
            except FormError as exc:
                self.failed[form] = str(exc)
                raise
            except Exception as exc:
                self.failed[form] = describe(exc)
                raise FormError(self.failed[form]) from exc
        return self.made[form]


def describe(exc: BaseException) -> str:
    """One line: the exception's type and first line (converters raise long messages)."""
    text = str(exc).strip().splitlines()
    first = next((line for line in text if line.strip()), "")
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def _onnx(f: Forms) -> tuple[Any, str]:
    from model_repo.importer import onnx_form

    kind = f.source.kind
    if kind == "onnx":
        return onnx_form.normalize(f.source.model, f.sig), "source"  # type: ignore[attr-defined]
    if kind == "torchscript":
        model = f.source.to_onnx(f.sig, f.inputs)  # type: ignore[attr-defined]
        names = [[s.name for s in f.sig.inputs], [s.name for s in f.sig.outputs]]
        return onnx_form.normalize(
            model, f.sig, *names
        ), "torch.onnx.export (TorchScript, opset 17)"
    if kind == "torch_export":
        model = f.source.to_onnx(f.sig, f.inputs)  # type: ignore[attr-defined]
        ins, outs = onnx_form.io_names(model)
        return onnx_form.normalize(model, f.sig, ins, outs), "torch.onnx.export (dynamo)"
    if kind == "savedmodel":
        model, outs = f.source.to_onnx(f.sig, f.inputs)  # type: ignore[attr-defined]
        return onnx_form.normalize(model, f.sig, [s.name for s in f.sig.inputs], outs), "tf2onnx"
    from model_repo.importer import stablehlo_onnx

    try:
        model = stablehlo_onnx.to_onnx(f.source.exported, f.sig)  # type: ignore[attr-defined]
    except stablehlo_onnx.Unsupported as exc:
        raise FormError(f"{stablehlo_onnx.CONVERTER}: op not supported: {exc}") from exc
    return model, stablehlo_onnx.CONVERTER


def _jax(f: Forms) -> tuple[Any, str]:
    if f.source.kind == "jax_export":
        return f.source.exported, "source"  # type: ignore[attr-defined]
    from model_repo.importer import to_jax
    from model_repo.importer.onnx_form import decompose_gelu

    model, path = f.upstream("onnx")
    try:
        return to_jax.from_onnx(decompose_gelu(model), f.sig, f.inputs), _via(
            path, "jaxonnxruntime"
        )
    except Exception as exc:
        raise FormError(f"jaxonnxruntime: {describe(exc)}") from exc


def _torchscript(f: Forms) -> tuple[Any, str]:
    from model_repo.importer import to_torch
    from model_repo.importer.onnx_form import decompose_gelu

    path = f.work / "model.pt"
    if f.source.kind == "torchscript":
        to_torch.save(f.source.module, path)  # type: ignore[attr-defined]
        return path, "source"
    model, via = f.upstream("onnx")
    try:
        module = to_torch.from_onnx(decompose_gelu(model), f.sig, f.inputs)
    except Exception as exc:
        raise FormError(f"onnx2torch: {describe(exc)}") from exc
    to_torch.save(module, path)
    return path, _via(via, "onnx2torch + torch.jit.trace")


def _via(previous: str, step: str) -> str:
    return step if previous == "source" else f"{previous} -> {step}"


MAKERS: dict[str, Callable[[Forms], tuple[Any, str]]] = {
    "onnx": _onnx,
    "jax": _jax,
    "torchscript": _torchscript,
}


def build(variant: str, f: Forms, folder: Path, name: str, version: str) -> tuple[str, Runner]:
    """Writes `variant`'s artifact into `folder`; returns (converter path, its runner)."""
    sig = f.sig
    if variant == "onnx":
        import onnx
        import onnxruntime as ort

        model, via = f.get("onnx")
        onnx.save(model, str(folder / "model.onnx"))
        session = ort.InferenceSession(
            str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        names = [s.name for s in sig.outputs]
        return via, lambda inputs: list(session.run(names, inputs))
    if variant == "jax":
        from model_repo.importer import to_jax

        exported, via = f.get("jax")
        (folder / "model.jax").write_bytes(exported.serialize())
        return via, to_jax.loader(folder / "model.jax", sig)
    if variant == "tensorflow":
        from model_repo.importer import to_tf

        if f.source.kind == "savedmodel":
            to_tf.from_savedmodel(f.source.path, f.source.fn, sig, folder)  # type: ignore[attr-defined]
            via = "source"
        else:
            exported, jax_via = f.upstream("jax")
            try:
                to_tf.from_exported(exported, sig, folder)
            except Exception as exc:
                raise FormError(f"XlaCallModule: {describe(exc)}") from exc
            via = _via(jax_via, "XlaCallModule (jax2tf's op)")
        return via, to_tf.loader(folder, sig)
    from model_repo.importer import to_torch

    path, via = f.get("torchscript")
    to_torch.archive(path, folder / "model.mar", name=name, version=version, sig=sig)
    return via, to_torch.loader(path, sig)

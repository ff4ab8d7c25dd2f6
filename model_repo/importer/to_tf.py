"""JAX -> TensorFlow: a SavedModel whose `serving_default` runs the artifact's StableHLO
in one XlaCallModule op (what jax2tf emits), in TF Serving's layout.

Written here rather than with `jax2tf.convert` for one reason: jax 0.10.2 serializes
StableHLO 1.15 (erf/GELU as `composite_v2`), and TF 2.21's XlaCallModule reads at most
1.13.7, so the module is re-serialized at the version TensorFlow reports. The weights
are constants inside the module; TensorFlow compiles it with XLA per input shape.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from model_repo.importer.signature import Signature

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf
from tensorflow.compiler.mlir.stablehlo import stablehlo as tf_stablehlo
from tensorflow.compiler.tf2xla.python import xla as tfxla

SIGNATURE = "serving_default"


def module_for_tf(exported: jax.export.Exported) -> bytes:
    """The module at the newest StableHLO version this TensorFlow reads, composites inlined.

    TF's shape refinement does not enter composite bodies (jax 0.10 emits erf as one), so
    with a symbolic batch dim they would stay dynamic: each becomes a call to its
    decomposition, which the refinement does inline.
    """
    from jax._src.interpreters import mlir as jax_mlir
    from jaxlib.mlir import ir
    from jaxlib.mlir.dialects import func
    from jaxlib.mlir.dialects import stablehlo as jax_stablehlo

    with jax_mlir.make_ir_context():
        module = ir.Module.parse(exported.mlir_module())
        for op in _composites(module.operation):
            callee = ir.FlatSymbolRefAttr(op.attributes["decomposition"]).value
            with ir.InsertionPoint(op), op.location:
                call = func.CallOp([r.type for r in op.results], callee, list(op.operands))
            for old, new in zip(op.results, call.results, strict=True):
                old.replace_all_uses_with(new)
            op.erase()
        text = str(module)
    return jax_stablehlo.serialize_portable_artifact_str(text, tf_stablehlo.get_current_version())


def _composites(op: Any) -> list[Any]:
    found = []
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                found += _composites(inner.operation)
    if op.name == "stablehlo.composite":
        found.append(op)
    return found


def from_exported(exported: jax.export.Exported, sig: Signature, folder: Path) -> None:
    """Writes the SavedModel's files into `folder` (saved_model.pb last)."""
    version = exported.calling_convention_version
    if version > tfxla.call_module_maximum_supported_version():
        raise RuntimeError(
            f"XlaCallModule here reads calling convention <= "
            f"{tfxla.call_module_maximum_supported_version()}, the artifact has {version}"
        )
    module = module_for_tf(exported)
    kept = exported.module_kept_var_idx
    attrs = {
        "version": version,
        "module": module,
        "Tout": [tf.as_dtype(a.dtype) for a in exported.out_avals],
        "Sout": [tuple(d if isinstance(d, int) else None for d in a.shape)
                 for a in exported.out_avals],
        "platforms": [p.upper() for p in exported.platforms],
        "disabled_checks": [str(c) for c in exported.disabled_safety_checks],
        "has_token_input_output": False,
        "use_shardy_partitioner": True,
    }  # fmt: skip
    specs = [
        tf.TensorSpec([None if d == -1 else d for d in s.shape], s.dtype, name=s.name)
        for s in sig.inputs
    ]

    def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        outs = tfxla.call_module([a for i, a in enumerate(args) if i in kept], **attrs)
        return {s.name: tf.identity(o, name=s.name) for s, o in zip(sig.outputs, outs, strict=True)}

    holder = tf.Module()
    holder.serve = tf.function(serve, input_signature=specs, autograph=False)
    save(holder, holder.serve.get_concrete_function(), folder)


def save(holder: tf.Module, fn: object, folder: Path) -> None:
    """tf.saved_model.save into a temporary folder beside `folder`, then the files moved in."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".tf-") as tmp:
        tf.saved_model.save(holder, tmp, signatures={SIGNATURE: fn})
        place(Path(tmp), folder)


def place(saved: Path, folder: Path) -> None:
    """A SavedModel's files into `folder` (TF Serving's <model>/<version>/ layout), the
    saved_model.pb last so that a half-copied export never looks built."""
    for item in saved.iterdir():
        if item.name == "saved_model.pb" or item.name.startswith(".tf-"):
            continue
        target = folder / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    shutil.copy2(saved / "saved_model.pb", folder / "saved_model.pb")


def from_savedmodel(source: Path, fn: object, sig: Signature, folder: Path) -> None:
    """A TensorFlow source as it is; re-wrapped only where its keys differ from the served names."""
    if all(s.name == s.source_name for s in (*sig.inputs, *sig.outputs)):
        folder.mkdir(parents=True, exist_ok=True)
        place(source, folder)
        return
    specs = [
        tf.TensorSpec([None if d == -1 else d for d in s.shape], s.dtype, name=s.name)
        for s in sig.inputs
    ]

    def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        out = fn(**{s.source_name: a for s, a in zip(sig.inputs, args, strict=True)})  # type: ignore[operator]
        return {s.name: tf.identity(out[s.source_name], name=s.name) for s in sig.outputs}

    holder = tf.Module()
    holder.source = fn
    holder.serve = tf.function(serve, input_signature=specs)
    save(holder, holder.serve.get_concrete_function(), folder)


def loader(folder: Path, sig: Signature) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """The SavedModel as the tf runner calls it: serving_default with keyword tensors."""
    fn = tf.saved_model.load(str(folder)).signatures[SIGNATURE]

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = fn(**{s.name: tf.constant(inputs[s.name]) for s in sig.inputs})
        return [result[s.name].numpy() for s in sig.outputs]

    return run

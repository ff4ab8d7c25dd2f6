"""ONNX -> JAX: jaxonnxruntime turns the graph into jnp calls, then `jax.export` saves it
as the JAX runner loads it (model_repo/builders/export_jax.py's layout): flat positional
inputs, a tuple of outputs, the leading free dim as the symbol `b`, for cpu and cuda.
Matmuls and convolutions are lowered at HIGHEST precision (no TF32 on GPUs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import onnx

from model_repo.importer.signature import Signature, Spec

PLATFORMS = ("cpu", "cuda")


def symbolic_specs(specs: Sequence[Spec]) -> list[Any]:
    """ShapeDtypeStructs: a leading -1 is the shared batch `b`, other dims fixed."""
    scope = jax.export.SymbolicScope()
    out = []
    for s in specs:
        dims = ", ".join("b" if (d == -1 and j == 0) else str(d) for j, d in enumerate(s.shape))
        shape = jax.export.symbolic_shape(dims, scope=scope) if dims else ()
        out.append(jax.ShapeDtypeStruct(shape, s.dtype))  # type: ignore[no-untyped-call]
    return out


def from_onnx(
    model: onnx.ModelProto, sig: Signature, inputs: dict[str, np.ndarray]
) -> jax.export.Exported:
    """The ONNX graph (served names, signature order) as a jax.export artifact."""
    from jaxonnxruntime import call_onnx

    examples = [inputs[s.name] for s in sig.inputs]
    fn, params = call_onnx.call_onnx_model(model, examples)

    def serve(*xs: jax.Array) -> tuple[jax.Array, ...]:
        return tuple(fn(params, list(xs)))

    with jax.default_matmul_precision("highest"):
        return jax.export.export(jax.jit(serve), platforms=PLATFORMS)(*symbolic_specs(sig.inputs))


def loader(path: Path, sig: Signature) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """The artifact as the JAX runner calls it: deserialized, flat positional inputs."""
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    cpu = jax.devices("cpu")[0]

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        with jax.default_device(cpu):
            return [np.asarray(o) for o in exported.call(*[inputs[s.name] for s in sig.inputs])]

    return run

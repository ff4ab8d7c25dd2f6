"""JAX source: a serialized `jax.export` artifact (StableHLO with symbolic dims).

It carries shapes and dtypes but no names. The runners call artifacts with flat
positional inputs and a tuple of outputs, so an artifact of any other pytree shape is
re-exported once around the original (`flat`), which keeps its platforms and symbols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from model_repo.importer.signature import Signature, datatype, make_specs
from model_repo.importer.sources import Arrays


def _shape(aval: Any) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else -1 for d in aval.shape)


def flat(exported: jax.export.Exported) -> jax.export.Exported:
    """The same function as flat positional arguments -> a tuple of outputs."""
    n_in = len(exported.in_avals)
    flat_in = jax.tree.structure(((0,) * n_in, {}))
    flat_out = jax.tree.structure((0,) * len(exported.out_avals))
    if exported.in_tree == flat_in and exported.out_tree == flat_out:
        return exported

    def call(*leaves: jax.Array) -> tuple[jax.Array, ...]:
        args, kwargs = jax.tree.unflatten(exported.in_tree, leaves)
        return tuple(jax.tree.leaves(exported.call(*args, **kwargs)))

    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in exported.in_avals]  # type: ignore[no-untyped-call]
    return jax.export.export(jax.jit(call), platforms=exported.platforms)(*specs)


class JaxExportSource:
    kind = "jax_export"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.exported = flat(jax.export.deserialize(bytearray(path.read_bytes())))

    def signature(self) -> Signature:
        ex = self.exported
        return Signature(
            make_specs([("", datatype(a.dtype), _shape(a)) for a in ex.in_avals], "input"),
            make_specs([("", datatype(a.dtype), _shape(a)) for a in ex.out_avals], "output"),
        )

    def run(self, sig: Signature, inputs: Arrays) -> list[np.ndarray]:
        cpu = jax.devices("cpu")[0]
        with jax.default_device(cpu):
            outs = self.exported.call(*[inputs[s.name] for s in sig.inputs])
        return [np.asarray(o) for o in outs]

"""The imported model's signature: served names, v2 datatypes, shapes with -1 for free dims.

Every source format names its tensors its own way ("input.1", "serving_default_x:0",
none at all for jax.export). The served name must also be a TensorFlow signature key and
a TorchServe handler key, so names are made identifiers here once, and each tensor keeps
its source name for the converters that talk to the source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gateway.tensors import DATATYPES, datatype_of


class SignatureError(ValueError):
    """The source's signature cannot be served as it is; the message says which flag helps."""


@dataclass(frozen=True)
class Spec:
    """One input or output."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    source_name: str = ""

    @property
    def dtype(self) -> np.dtype[Any]:
        return DATATYPES[self.datatype].dtype.newbyteorder("=")

    def as_yaml(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Spec, ...]
    outputs: tuple[Spec, ...]

    @property
    def batched(self) -> bool:
        """Every input and output leads with the free batch dim (what gateway batching needs)."""
        return all(s.shape[:1] == (-1,) for s in (*self.inputs, *self.outputs))

    def as_yaml(self) -> dict[str, Any]:
        return {
            "inputs": [s.as_yaml() for s in self.inputs],
            "outputs": [s.as_yaml() for s in self.outputs],
        }


def datatype(dtype: Any) -> str:
    """The v2 datatype of a numpy-compatible dtype."""
    return datatype_of(np.empty(0, dtype=np.dtype(dtype)))


def served_name(name: str, fallback: str) -> str:
    """An identifier: TF signature keys and Python kwargs accept nothing else."""
    clean = re.sub(r"[^A-Za-z0-9_]", "_", name.split(":")[0]).strip("_")
    if not clean:
        return fallback
    return clean if not clean[0].isdigit() else f"t_{clean}"


def default_names(count: int, stem: str) -> list[str]:
    return [stem] if count == 1 else [f"{stem}_{i}" for i in range(count)]


def make_specs(
    raw: Sequence[tuple[str, str, tuple[int, ...] | None]], stem: str
) -> tuple[Spec, ...]:
    """Specs from (source name, datatype, shape or None when unknown) with unique served names."""
    fallback = default_names(len(raw), stem)
    names: list[str] = []
    for (source, _, _), fb in zip(raw, fallback, strict=True):
        name = served_name(source, fb) if source else fb
        names.append(name if name not in names else f"{name}_{len(names)}")
    return tuple(
        Spec(n, dt, shape if shape is not None else (), source)
        for n, (source, dt, shape) in zip(names, raw, strict=True)
    )


def parse_shape(text: str) -> tuple[str | None, tuple[int, ...], str | None]:
    """`NAME:-1,3,32,32[:DATATYPE]` or `-1,3,32,32` -> (NAME or None, dims, datatype or None)."""
    parts = text.split(":")
    dtype = parts.pop() if len(parts) > 1 and parts[-1].upper() in DATATYPES else None
    name = ":".join(parts[:-1]) or None
    try:
        shape = tuple(int(d) for d in parts[-1].replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise SignatureError(
            f"--input-shape {text!r}: dims must be integers, -1 for free"
        ) from None
    if not shape or any(d < -1 or d == 0 for d in shape):
        raise SignatureError(f"--input-shape {text!r}: dims must be >= 1, or -1 for free")
    return name, shape, dtype.upper() if dtype else None


def apply_overrides(
    sig: Signature,
    *,
    input_shapes: Sequence[str] = (),
    batch_dim: int | None = None,
    input_names: Sequence[str] = (),
    output_names: Sequence[str] = (),
) -> Signature:
    """The flags' corrections: shapes the source does not carry, a batch dim, served names."""
    inputs = list(sig.inputs)
    for text in input_shapes:
        name, shape, dtype = parse_shape(text)
        if name is None and len(inputs) != 1:
            raise SignatureError("--input-shape needs NAME:dims for a model with several inputs")
        idx = next((i for i, s in enumerate(inputs) if name in (None, s.name, s.source_name)), None)
        if idx is None:
            raise SignatureError(f"--input-shape: no input {name!r} ({[s.name for s in inputs]})")
        inputs[idx] = replace(inputs[idx], shape=shape, datatype=dtype or inputs[idx].datatype)
    outputs = list(sig.outputs)
    if batch_dim is not None:
        if batch_dim != 0:
            raise SignatureError("--batch-dim: only 0 (the leading dim) can be the batch dim")
        inputs = [replace(s, shape=(-1, *s.shape[1:])) for s in inputs]
        outputs = [replace(s, shape=(-1, *s.shape[1:])) for s in outputs]
    for specs, names, flag in ((inputs, input_names, "--input-names"),
                               (outputs, output_names, "--output-names")):  # fmt: skip
        if names:
            if len(names) != len(specs) or len(set(names)) != len(names):
                raise SignatureError(f"{flag}: give {len(specs)} distinct names")
            for i, n in enumerate(names):
                if served_name(n, "") != n:
                    raise SignatureError(f"{flag}: {n!r} is not an identifier")
                specs[i] = replace(specs[i], name=n)
    return Signature(tuple(inputs), tuple(outputs))


def check_servable(sig: Signature) -> None:
    """Every input needs a known rank and concrete dims past a leading batch dim."""
    for s in sig.inputs:
        if not s.shape:
            raise SignatureError(
                f"input {s.name!r}: the source does not say its shape; pass "
                f"--input-shape {s.name}:-1,... (-1 for the batch dim)"
            )
        free = [j for j, d in enumerate(s.shape) if d == -1 and j > 0]
        if free:
            raise SignatureError(
                f"input {s.name!r} {list(s.shape)}: dims {free} are dynamic and only the "
                f"leading dim can be the batch dim; pass --input-shape {s.name}:... with "
                "concrete sizes"
            )


def settle_outputs(sig: Signature, arrays: Sequence[np.ndarray], rows: int) -> Signature:
    """Output specs completed from the reference run (TorchScript says nothing about them).

    The leading dim is the batch dim where the source says so, or, when the source does
    not say, where every input is batched and the output has one row per sample.
    """
    specs = sig.outputs or make_specs([("", datatype(a.dtype), None) for a in arrays], "output")
    if len(specs) != len(arrays):
        raise SignatureError(f"the source returned {len(arrays)} outputs, it declares {len(specs)}")
    inputs_batched = all(s.shape[:1] == (-1,) for s in sig.inputs)
    settled = []
    for spec, arr in zip(specs, arrays, strict=True):
        known = bool(spec.shape) or arr.ndim == 0
        if known and len(spec.shape) != arr.ndim:
            raise SignatureError(
                f"output {spec.name!r}: the source declares {list(spec.shape)}, returns "
                f"{list(arr.shape)}"
            )
        dims = list(arr.shape)
        if dims:
            lead = spec.shape[0] == -1 if known else (inputs_batched and dims[0] == rows)
            dims[0] = -1 if lead else dims[0]
        settled.append(replace(spec, datatype=datatype(arr.dtype), shape=tuple(dims)))
    return Signature(sig.inputs, tuple(settled))

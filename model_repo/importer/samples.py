"""Sample inputs for the parity check, and the samples.npz the served model keeps.

Given (`--samples FILE.npz|.npy`) or generated from the signature with a seeded rng.
samples.npz follows the built examples: `inputs` (the first input), `logits` (the source's
first output, the reference) and `labels` (its argmax per row), which `servegate infer`
and `servegate bench` read; plus `input.NAME` / `output.NAME` for every tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from model_repo.importer.signature import Signature, SignatureError, Spec

DEFAULT_ROWS = 8
SAMPLES_FILE = "samples.npz"

Arrays = dict[str, np.ndarray]


def generate(sig: Signature, rows: int = DEFAULT_ROWS, seed: int = 0) -> Arrays:
    """Seeded inputs: N(0, 1) floats, small non-negative ints (indices, ids), random bools."""
    rng = np.random.default_rng(seed)
    out: Arrays = {}
    for s in sig.inputs:
        shape = tuple(rows if d == -1 else d for d in s.shape)
        kind = s.dtype.kind
        if kind == "f":
            out[s.name] = rng.normal(0.0, 1.0, shape).astype(s.dtype)
        elif kind in "iu":
            out[s.name] = rng.integers(0, 10, shape).astype(s.dtype)
        elif kind == "b":
            out[s.name] = rng.random(shape) < 0.5
        else:
            raise SignatureError(f"input {s.name!r}: cannot generate {s.datatype}; pass --samples")
    return out


def load(path: Path, sig: Signature) -> Arrays:
    """Inputs from a .npy (one input) or a .npz (keyed by input name, or `inputs`)."""
    if not path.is_file():
        raise SignatureError(f"--samples {path}: no such file")
    try:
        if path.suffix == ".npy":
            found: Mapping[str, np.ndarray] = {sig.inputs[0].name: np.load(path)}
            if len(sig.inputs) != 1:
                raise SignatureError("--samples: a .npy holds one input; use a .npz keyed by name")
        else:
            with np.load(path) as f:
                found = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise SignatureError(f"--samples {path}: not a numpy file ({exc})") from None
    out: Arrays = {}
    for s in sig.inputs:
        key = next((k for k in (s.name, s.source_name, f"input.{s.name}") if k in found), None)
        if key is None and len(sig.inputs) == 1 and "inputs" in found:
            key = "inputs"
        if key is None:
            raise SignatureError(f"--samples {path}: no array for input {s.name!r}")
        out[s.name] = _fit(s, np.asarray(found[key]), path)
    rows = {a.shape[0] for a in out.values() if a.ndim}
    if len(rows) > 1:
        raise SignatureError(f"--samples {path}: inputs disagree on the row count {sorted(rows)}")
    return out


def _fit(spec: Spec, array: np.ndarray, path: Path) -> np.ndarray:
    if len(array.shape) != len(spec.shape) or any(
        d not in (-1, a) for d, a in zip(spec.shape, array.shape, strict=True)
    ):
        raise SignatureError(
            f"--samples {path}: {spec.name} has shape {list(array.shape)}, "
            f"the signature says {list(spec.shape)}"
        )
    return array.astype(spec.dtype, copy=False)


def first_row(arrays: Arrays) -> Arrays:
    """Batch 1: the check that a variant did not bake the sample batch size in."""
    return {k: v[:1] for k, v in arrays.items()}


def write(folder: Path, sig: Signature, inputs: Arrays, reference: Arrays) -> Path:
    """samples.npz as the examples have it, plus every named tensor."""
    first_out = reference[sig.outputs[0].name]
    arrays: Arrays = {
        "inputs": inputs[sig.inputs[0].name],
        "logits": first_out,
    }
    if first_out.ndim >= 1 and first_out.dtype.kind == "f" and len(first_out):
        arrays["labels"] = first_out.reshape(len(first_out), -1).argmax(axis=1).astype(np.int64)
    arrays.update({f"input.{k}": v for k, v in inputs.items()})
    arrays.update({f"output.{k}": v for k, v in reference.items()})
    path = folder / SAMPLES_FILE
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path

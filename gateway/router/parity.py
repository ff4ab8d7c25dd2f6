"""Router live parity: how far a shadow's answer is from the primary's, output by output (pure).

Both answers come from the same request, so each output should match within the
frameworks' numeric noise. Per output: the max absolute and the max relative difference
(|a - b| / max(|a|, |b|), 0 where both are 0), and for a 2-D float output (a batch of
scores) how many rows pick the same argmax. An output missing on one side, or of another
shape or datatype, is a mismatch, not a number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.tensors import InferResponse, Tensor


@dataclass(frozen=True, slots=True)
class OutputDiff:
    """One output of a (primary, shadow) pair of answers."""

    output: str
    max_abs: float | None = None
    max_rel: float | None = None
    rows: int = 0
    """Rows compared by argmax (2-D float outputs only; else 0)."""
    argmax_agree: int = 0
    """Of `rows`, how many have the same argmax on both sides."""
    mismatch: str | None = None
    """Why the output could not be compared: missing, shape, datatype, values (BYTES or
    other non-numeric outputs that differ)."""


def compare(primary: InferResponse, shadow: InferResponse) -> list[OutputDiff]:
    """Every output of the primary's answer against the shadow's output of the same name."""
    theirs = {t.name: t for t in shadow.outputs}
    return [_compare(t, theirs.get(t.name)) for t in primary.outputs]


def _compare(a: Tensor, b: Tensor | None) -> OutputDiff:
    if b is None:
        return OutputDiff(a.name, mismatch="missing")
    if a.shape != b.shape:
        return OutputDiff(a.name, mismatch="shape")
    numeric = a.data.dtype.kind in "biuf" and b.data.dtype.kind in "biuf"
    if not numeric:
        if a.datatype != b.datatype:
            return OutputDiff(a.name, mismatch="datatype")
        same = bool(np.array_equal(a.data, b.data))
        return OutputDiff(a.name, 0.0, 0.0) if same else OutputDiff(a.name, mismatch="values")
    x = a.data.astype(np.float64, copy=False)
    y = b.data.astype(np.float64, copy=False)
    max_abs, max_rel = _diffs(x, y)
    rows = agree = 0
    if x.ndim == 2 and x.shape[1] > 0 and a.data.dtype.kind == "f" and b.data.dtype.kind == "f":
        rows = x.shape[0]
        agree = int(np.count_nonzero(np.argmax(x, axis=1) == np.argmax(y, axis=1)))
    return OutputDiff(a.name, max_abs, max_rel, rows, agree)


def _diffs(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if x.size == 0:
        return 0.0, 0.0
    both_nan = np.isnan(x) & np.isnan(y)
    same_inf = np.isinf(x) & (x == y)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(x - y)
        scale = np.maximum(np.abs(x), np.abs(y))
        rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    # A NaN on one side only is as far apart as two numbers can be; so is inf against
    # a finite number (inf / inf is NaN).
    apart = np.isnan(diff) | np.isnan(rel)
    diff[apart] = np.inf
    rel[apart] = np.inf
    equal = both_nan | same_inf
    diff[equal] = 0.0
    rel[equal] = 0.0
    return float(diff.max()), float(rel.max())

"""Holds a variant's outputs to the source's: max abs / rel diff, argmax agreement, a verdict.

A variant passes when every output is within `atol + rtol * |reference|` everywhere
(numpy.allclose's rule) with the reference's shape and dtype kind. The defaults suit
float32 models converted between frameworks: summation order differs between kernels,
so a deep CNN drifts by ~1e-5 relative; anything past these is a wrong conversion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

RTOL = 1e-4
ATOL = 1e-5


@dataclass(frozen=True)
class Comparison:
    max_abs: float
    max_rel: float
    argmax_agreement: float | None  # fraction of rows whose argmax agrees; None: not a score
    ok: bool
    problem: str = ""


def compare(
    reference: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    *,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> Comparison:
    """Every output of `got` against `reference`, worst case over outputs."""
    max_abs = max_rel = 0.0
    agree: list[float] = []
    for name, ref in reference.items():
        if name not in got:
            return Comparison(np.inf, np.inf, None, False, f"output {name!r} missing")
        out = np.asarray(got[name])
        if out.shape != ref.shape:
            return Comparison(
                np.inf, np.inf, None, False,
                f"{name}: shape {list(out.shape)}, the source gives {list(ref.shape)}",
            )  # fmt: skip
        r = ref.astype(np.float64)
        o = out.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = np.abs(o - r)
            if not np.array_equal(np.isnan(o), np.isnan(r)):
                return Comparison(np.inf, np.inf, None, False, f"{name}: NaNs differ")
            diff = np.nan_to_num(diff, nan=0.0)
            rel = diff / np.maximum(np.abs(r), atol)
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float(rel.max()))
            if not bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(r)))):
                worst = np.unravel_index(int(np.argmax(diff - rtol * np.abs(r))), diff.shape)
                problem = (
                    f"{name}: |diff| {float(diff[worst]):.3g} at {list(map(int, worst))} "
                    f"exceeds atol {atol:g} + rtol {rtol:g} * |ref|"
                )
                return Comparison(max_abs, max_rel, _argmax(ref, out), False, problem)
        a = _argmax(ref, out)
        if a is not None:
            agree.append(a)
    return Comparison(max_abs, max_rel, min(agree) if agree else None, True)


def _argmax(ref: np.ndarray, out: np.ndarray) -> float | None:
    """Row-wise argmax agreement for float outputs with a batch and a class axis."""
    if ref.ndim < 2 or ref.dtype.kind != "f" or not len(ref) or ref[0].size < 2:
        return None
    a = ref.reshape(len(ref), -1).argmax(axis=1)
    b = out.reshape(len(out), -1).argmax(axis=1)
    return float((a == b).mean())


def merge(first: Comparison, second: Comparison) -> Comparison:
    """The worse of two checks (the full batch and batch 1)."""
    if not first.ok:
        return first
    if not second.ok:
        return Comparison(
            max(first.max_abs, second.max_abs),
            max(first.max_rel, second.max_rel),
            first.argmax_agreement,
            False,
            f"batch 1: {second.problem}",
        )
    return Comparison(
        max(first.max_abs, second.max_abs),
        max(first.max_rel, second.max_rel),
        first.argmax_agreement,
        True,
    )

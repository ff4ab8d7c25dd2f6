"""Signature checks: every mismatch is refused with the offending tensor named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Signature, TensorSpec
from gateway.errors import BadRequest
from gateway.protocol import signature
from gateway.tensors import InferRequest, RequestedOutput, Tensor

SIG = Signature(
    inputs=(TensorSpec(name="x", datatype="FP32", shape=(-1, 4)),
            TensorSpec(name="tag", datatype="BYTES", shape=(-1,))),
    outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1, 4)),),
)  # fmt: skip


def _x(shape: tuple[int, ...], datatype: str = "FP32", name: str = "x") -> Tensor:
    if datatype == "BYTES":
        return Tensor(name, datatype, np.full(shape, b"a", dtype=object))
    return Tensor(name, datatype, np.zeros(shape, np.float32))


def _req(*inputs: Tensor, outputs: tuple[str, ...] = ()) -> InferRequest:
    return InferRequest("m", inputs, outputs=tuple(RequestedOutput(o) for o in outputs))


def test_a_matching_request_passes() -> None:
    signature.check(_req(_x((3, 4)), _x((3,), "BYTES", "tag"), outputs=("y",)), SIG)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (_req(_x((1, 4)), _x((1,), "BYTES", "tag"), _x((1, 4), name="z")), "unknown input 'z'"),
        (_req(_x((1, 4)), _x((1,), "BYTES", "tag"), _x((1, 4))), "given more than once"),
        (_req(_x((1, 4), "BYTES"), _x((1,), "BYTES", "tag")), "BYTES, the model expects FP32"),
        (_req(_x((1, 5)), _x((1,), "BYTES", "tag")), r"shape \[1, 5\] does not match"),
        (_req(_x((4,)), _x((1,), "BYTES", "tag")), r"shape \[4\] does not match"),
        (_req(_x((1, 4))), r"missing inputs \['tag'\]"),
        (_req(_x((2, 4)), _x((3,), "BYTES", "tag")), "disagree on the batch size"),
        (_req(_x((1, 4)), _x((1,), "BYTES", "tag"), outputs=("nope",)), "unknown output 'nope'"),
    ],
)  # fmt: skip
def test_mismatches_are_refused(request_: InferRequest, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        signature.check(request_, SIG)


@given(st.lists(st.integers(0, 6), min_size=1, max_size=3))
def test_check_agrees_with_a_reference_predicate(shape: list[int]) -> None:
    spec = (-1, 4)
    ok = len(shape) == len(spec) and all(w in (-1, g) for g, w in zip(shape, spec, strict=False))
    req = _req(_x(tuple(shape)), _x((shape[0],), "BYTES", "tag"))
    if ok:
        signature.check(req, SIG)
    else:
        with pytest.raises(BadRequest):
            signature.check(req, SIG)

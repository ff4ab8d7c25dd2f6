"""Live parity's pure comparison: max abs / rel diff, argmax agreement, mismatches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gateway.router.parity import compare
from gateway.tensors import InferResponse, Tensor


def answer(**outputs: np.ndarray) -> InferResponse:
    return InferResponse("m", tuple(Tensor.from_numpy(n, a) for n, a in outputs.items()))


def test_identical_answers() -> None:
    x = np.array([[0.1, 0.9], [0.7, 0.3]], np.float32)
    (diff,) = compare(answer(y=x), answer(y=x.copy()))
    assert (diff.output, diff.max_abs, diff.max_rel, diff.rows, diff.argmax_agree) == (
        "y",
        0.0,
        0.0,
        2,
        2,
    )
    assert diff.mismatch is None


def test_differences_and_argmax() -> None:
    a = np.array([[1.0, 2.0], [4.0, 3.0]], np.float32)
    b = np.array([[1.0, 2.5], [3.0, 3.5]], np.float32)
    (diff,) = compare(answer(y=a), answer(y=b))
    assert diff.max_abs == pytest.approx(1.0)
    assert diff.max_rel == pytest.approx(0.25)  # |4 - 3| / 4
    assert (diff.rows, diff.argmax_agree) == (2, 1)


def test_argmax_only_for_2d_float() -> None:
    (ints,) = compare(answer(y=np.ones((2, 3), np.int64)), answer(y=np.ones((2, 3), np.int64)))
    (flat,) = compare(answer(y=np.ones(3, np.float32)), answer(y=np.ones(3, np.float32)))
    assert (ints.rows, flat.rows, ints.max_abs, flat.max_abs) == (0, 0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("shadow", "reason"),
    [
        (answer(z=np.ones(2, np.float32)), "missing"),
        (answer(y=np.ones(3, np.float32)), "shape"),
        (answer(y=np.array([b"a", b"b"], object)), "datatype"),
    ],
)
def test_mismatches(shadow: InferResponse, reason: str) -> None:
    (diff,) = compare(answer(y=np.ones(2, np.float32)), shadow)
    assert (diff.mismatch, diff.max_abs) == (reason, None)


def test_bytes_outputs_compare_by_equality() -> None:
    words = np.array([b"a", b"b"], object)
    (same,) = compare(answer(y=words), answer(y=words.copy()))
    (other,) = compare(answer(y=words), answer(y=np.array([b"a", b"c"], object)))
    assert (same.max_abs, same.mismatch, other.mismatch) == (0.0, None, "values")


def test_nan_and_inf() -> None:
    a = np.array([np.nan, np.inf, 1.0], np.float32)
    (same,) = compare(answer(y=a), answer(y=a.copy()))
    assert (same.max_abs, same.max_rel) == (0.0, 0.0)
    (one_sided,) = compare(answer(y=a), answer(y=np.array([0.0, np.inf, 1.0], np.float32)))
    assert one_sided.max_abs == np.inf and one_sided.max_rel == np.inf


FLOATS = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
    elements=st.floats(-1e6, 1e6, width=32),
)


@given(FLOATS, st.data())
def test_diffs_are_symmetric_and_zero_on_itself(a: np.ndarray, data: st.DataObject) -> None:
    b = data.draw(hnp.arrays(np.float32, a.shape, elements=st.floats(-1e6, 1e6, width=32)))
    (self_diff,) = compare(answer(y=a), answer(y=a))
    assert (self_diff.max_abs, self_diff.max_rel) == (0.0, 0.0)
    (ab,) = compare(answer(y=a), answer(y=b))
    (ba,) = compare(answer(y=b), answer(y=a))
    assert (ab.max_abs, ab.max_rel) == (ba.max_abs, ba.max_rel)
    assert ab.max_rel is not None and 0.0 <= ab.max_rel <= 2.0

"""The DATATYPES table and raw encoding: every datatype round-trips byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.tensors import DATATYPES, Tensor, checked_count, datatype_of, decode_raw, encode_raw
from tests.strategies import arrays, assert_same


@given(st.sampled_from(list(DATATYPES)).flatmap(lambda d: st.tuples(st.just(d), arrays(d))))
def test_raw_round_trip_every_datatype(case: tuple[str, np.ndarray]) -> None:
    datatype, data = case
    raw = encode_raw(datatype, data)
    back = decode_raw(datatype, data.shape, raw)
    assert_same(Tensor("t", datatype, data), Tensor("t", datatype, back))


def test_raw_layout_is_little_endian_row_major() -> None:
    data = np.array([[1, 2], [3, 256]], dtype=np.int32)
    assert encode_raw("INT32", data) == bytes.fromhex("01000000020000000300000000010000")
    assert encode_raw("BOOL", np.array([True, False])) == b"\x01\x00"


def test_bytes_elements_are_length_prefixed() -> None:
    data = np.array([b"ab", b""], dtype=object)
    assert encode_raw("BYTES", data) == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP32", (2,), b"\x00" * 7, "expected 8 bytes"),
        ("BYTES", (2,), b"\x01\x00\x00\x00a", "5 bytes cannot hold 2 BYTES elements"),
        ("BYTES", (2,), b"\x01\x00\x00\x00a\x05\x00\x00", "ends after 1 of 2"),
        ("BYTES", (1,), b"\x09\x00\x00\x00a", "past the end"),
        ("BYTES", (1,), b"\x01\x00\x00\x00ab", "left over"),
    ],
)
def test_decode_raw_rejects_wrong_sizes(
    datatype: str, shape: tuple[int, ...], raw: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        decode_raw(datatype, shape, raw)


def test_datatype_of_numpy_arrays() -> None:
    assert datatype_of(np.zeros(2, np.float32)) == "FP32"
    assert datatype_of(np.zeros(2, ">i8")) == "INT64"
    assert datatype_of(np.array(["a"])) == "BYTES"
    with pytest.raises(ValueError, match="no v2 datatype"):
        datatype_of(np.zeros(2, np.complex64))


@pytest.mark.parametrize(
    ("shape", "itemsize", "count"),
    [((2, 3), 4, 6), ((), 4, 1), ((0, 2**40), 4, 0), ((2**20,) * 3, 1, 2**60), ((1,) * 32, 8, 1)],
)
def test_checked_count_of_shapes_numpy_can_take(
    shape: tuple[int, ...], itemsize: int, count: int
) -> None:
    assert checked_count(shape, itemsize) == count


@pytest.mark.parametrize(
    ("shape", "itemsize", "message"),
    [
        ((2**40, 2**40), 4, "too large for any tensor"),
        ((0, 2**62), 4, "too large for any tensor"),  # numpy counts a zero dim as 1 here
        ((2**63 - 1,), 8, "too large for any tensor"),
        ((1, -1), 4, "has a negative dimension"),
        ((1,) * 33, 4, "more than 32"),
    ],
)
def test_checked_count_refuses_what_numpy_cannot_hold(
    shape: tuple[int, ...], itemsize: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        checked_count(shape, itemsize)
    if "too large" in message:  # numpy refuses it too, before allocating anything
        with pytest.raises(ValueError, match="array is too big"):
            np.empty(shape, f"u{itemsize}")


def test_decode_raw_checks_the_shape_before_the_bytes() -> None:
    with pytest.raises(ValueError, match="too large for any tensor"):
        decode_raw("FP32", (2**40, 2**40), b"")

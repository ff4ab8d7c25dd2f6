"""The TorchServe framing: frames and bundles round-trip, and malformed bytes are refused."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocol import torchserve_framing as framing
from gateway.tensors import Tensor, decode_raw, encode_raw
from tests.strategies import assert_same, tensors

datatypes = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=255)
shapes = st.lists(st.integers(0, 2**40), max_size=framing.MAX_DIMS).map(tuple)


@given(datatypes, shapes, st.binary(max_size=64))
def test_frame_round_trips(datatype: str, shape: tuple[int, ...], raw: bytes) -> None:
    got_type, got_shape, got_raw = framing.unframe(framing.frame(datatype, shape, raw))
    assert (got_type, got_shape, bytes(got_raw)) == (datatype, shape, raw)


@given(st.lists(tensors(), max_size=4, unique_by=lambda t: t.name))
def test_tensors_round_trip_through_a_bundle(ts: list[Tensor]) -> None:
    """What the backend sends and the handler answers: every datatype, 0-size included."""
    buf = framing.bundle(
        {t.name: framing.frame(t.datatype, t.shape, encode_raw(t.datatype, t.data)) for t in ts}
    )
    back = framing.unbundle(buf)
    assert list(back) == [t.name for t in ts]
    for t in ts:
        datatype, shape, raw = back[t.name]
        assert_same(t, Tensor(t.name, datatype, decode_raw(datatype, shape, raw)))


def test_raw_part_is_a_view_not_a_copy() -> None:
    buf = bytearray(framing.frame("FP32", (1, 2), b"\x00" * 8))
    _, _, raw = framing.unframe(buf)
    buf[-1] = 7
    assert raw[-1] == 7


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_but_value_error(junk: bytes) -> None:
    for decode in (framing.unframe, framing.unbundle):
        with contextlib.suppress(ValueError):
            decode(junk)


@given(st.data())
def test_every_truncation_of_a_bundle_is_refused(data: st.DataObject) -> None:
    buf = framing.bundle(
        {"a": framing.frame("FP32", (2, 1), b"\x01" * 8), "bé": framing.frame("BOOL", (0,), b"")}
    )
    cut = data.draw(st.integers(0, len(buf) - 1))
    with pytest.raises(ValueError):
        framing.unbundle(buf[:cut])


@pytest.mark.parametrize(
    ("buf", "message"),
    [
        (b"SGT2" + b"\x04FP32\x00", "bad magic"),
        (b"SGT1\x00\x00", "datatype"),
        (b"SGT1\x04FP32\x02" + struct.pack("<q", 1), "shape"),
        (b"SGT1\x04FP32\x01" + struct.pack("<q", -1), "negative"),
        (b"SGT1\x02\xff\xfe\x00", "ASCII"),
        (b"SGT1\x04FP32\x21", "shape"),
    ],
)
def test_malformed_frames_say_what_is_wrong(buf: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        framing.unframe(buf)


def test_malformed_bundles_say_what_is_wrong() -> None:
    one = framing.frame("FP32", (0,), b"")
    entry = struct.pack("<H", 1) + b"x" + struct.pack("<Q", len(one)) + one
    with pytest.raises(ValueError, match="twice"):
        framing.unbundle(b"SGB1" + struct.pack("<I", 2) + entry + entry)
    with pytest.raises(ValueError, match="left over"):
        framing.unbundle(b"SGB1" + struct.pack("<I", 1) + entry + b"!")
    with pytest.raises(ValueError, match="past the end"):
        framing.unbundle(b"SGB1" + struct.pack("<I", 1) + entry[:-1])
    with pytest.raises(ValueError, match="bad magic"):
        framing.unbundle(one)


@pytest.mark.parametrize(
    ("datatype", "shape"), [("", (1,)), ("é", (1,)), ("X" * 256, (1,)), ("FP32", (-1,))]
)
def test_unframeable_tensors_are_refused(datatype: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):  # UnicodeEncodeError is one
        framing.frame(datatype, shape, b"")

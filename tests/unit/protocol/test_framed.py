"""The framed transport's frames: round trips in any chunking, and malformed bytes refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocol import framed

MAX = 1 << 20
kinds = st.sampled_from(sorted(framed.REQUEST_KINDS))
frames = st.lists(st.tuples(kinds, st.binary(max_size=300)), max_size=6)


@given(kinds, st.binary(max_size=1000))
def test_frame_round_trips(kind: int, payload: bytes) -> None:
    data = framed.encode(kind, payload)
    assert data == framed.header(kind, len(payload)) + payload
    got_kind, length = framed.decode_header(
        data[: framed.HEADER_SIZE], allowed=framed.REQUEST_KINDS, max_length=MAX
    )
    assert (got_kind, data[framed.HEADER_SIZE : framed.HEADER_SIZE + length]) == (kind, payload)


@given(frames, st.data())
def test_split_finds_every_frame_however_the_stream_is_cut(
    sent: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    """What a reader sees on a socket: the frames, cut anywhere, in order, nothing left."""
    stream = b"".join(framed.encode(k, p) for k, p in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    got: list[tuple[int, bytes]] = []
    rest = b""
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        found, rest = framed.split(rest + stream[a:b], allowed=framed.REQUEST_KINDS, max_length=MAX)
        got += found
    assert got == sent
    assert rest == b""


@given(st.integers(1, (1 << 16) - 1), st.text(max_size=200))
def test_error_payload_round_trips(code: int, message: str) -> None:
    assert framed.decode_error(framed.encode_error(code, message)) == (code, message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (framed.header(7, 0), "unknown frame kind 7"),
        (framed.header(framed.OK, 0), "unknown frame kind 0"),  # an answer sent as a request
        (framed.header(framed.INFER, MAX + 1), f"exceeds the limit of {MAX}"),
        (b"\x01\x00\x00", "frame header is 5 bytes, got 3"),
    ],
)
def test_malformed_headers_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(framed.FrameError, match=message):
        framed.decode_header(data, allowed=framed.REQUEST_KINDS, max_length=MAX)


def test_split_refuses_a_bad_header_in_the_stream() -> None:
    stream = framed.encode(framed.INFER, b"ok") + framed.header(9, 0)
    with pytest.raises(framed.FrameError, match="unknown frame kind 9"):
        framed.split(stream, allowed=framed.REQUEST_KINDS, max_length=MAX)


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"", "has no status code"), (b"\x05", "has no status code"), (b"\x00\x00hi", "code 0")],
)
def test_malformed_error_payloads_are_refused(payload: bytes, message: str) -> None:
    with pytest.raises(framed.FrameError, match=message):
        framed.decode_error(payload)


def test_ok_is_not_an_error_code() -> None:
    with pytest.raises(ValueError, match="not an error code"):
        framed.encode_error(0, "fine")


def test_endpoints_name_a_socket_or_nothing() -> None:
    assert framed.socket_path(framed.endpoint("/tmp/x/onnx.sock")) == "/tmp/x/onnx.sock"
    assert framed.socket_path("127.0.0.1:8001") is None
    with pytest.raises(ValueError, match="names no socket path"):
        framed.socket_path(framed.SCHEME)

"""Protocol: the framed transport for the gateway -> local v2 runner hop (pure, no I/O).

The same v2 protobuf messages as gRPC, without HTTP/2: over a Unix socket each frame is

    <u32 little-endian payload length> <u8 kind or status> <payload>

Requests: INFER (a ModelInferRequest) and READY (a ModelReadyRequest). Answers: OK (the
matching response message) or ERROR (<u16 LE gRPC status code number> <UTF-8 message>),
which the gateway maps through the same table as a gRPC status. One request is in flight
per connection, so answers need no ids. Runners and gateway share this one copy.
"""

from __future__ import annotations

import struct
from typing import Final

HEADER: Final = struct.Struct("<IB")
HEADER_SIZE: Final = HEADER.size
_CODE: Final = struct.Struct("<H")

# request kinds
INFER: Final = 1
READY: Final = 2
REQUEST_KINDS: Final = frozenset({INFER, READY})

# response statuses
OK: Final = 0
ERROR: Final = 1
RESPONSE_STATUSES: Final = frozenset({OK, ERROR})

SCHEME: Final = "unix+framed://"
"""An endpoint `unix+framed:///abs/path.sock` names a runner's framed socket."""


class FrameError(ValueError):
    """Bytes that are not a frame: unknown kind, oversize length, short or bad payload."""


def header(kind: int, length: int) -> bytes:
    """The 5 bytes in front of a payload of `length` bytes (sent separately: no copy)."""
    return HEADER.pack(length, kind)


def encode(kind: int, payload: bytes) -> bytes:
    """One whole frame."""
    return HEADER.pack(len(payload), kind) + payload


def decode_header(data: bytes, *, allowed: frozenset[int], max_length: int) -> tuple[int, int]:
    """(kind, payload length) from the first 5 bytes; FrameError when they cannot be one."""
    if len(data) != HEADER_SIZE:
        raise FrameError(f"frame header is {HEADER_SIZE} bytes, got {len(data)}")
    length, kind = HEADER.unpack(data)
    if kind not in allowed:
        raise FrameError(f"unknown frame kind {kind}")
    if length > max_length:
        raise FrameError(f"frame of {length} bytes exceeds the limit of {max_length}")
    return kind, length


def encode_error(code: int, message: str) -> bytes:
    """An ERROR payload: a gRPC status code number and its message."""
    if not 0 < code < 1 << 16:
        raise ValueError(f"status code {code} is not an error code")
    return _CODE.pack(code) + message.encode("utf-8", errors="replace")


def decode_error(payload: bytes) -> tuple[int, str]:
    """(gRPC status code number, message) from an ERROR payload."""
    if len(payload) < _CODE.size:
        raise FrameError(f"error payload of {len(payload)} bytes has no status code")
    (code,) = _CODE.unpack_from(payload)
    if code == 0:
        raise FrameError("error payload carries status code 0 (OK)")
    return code, payload[_CODE.size :].decode("utf-8", errors="replace")


def split(
    buffer: bytes, *, allowed: frozenset[int], max_length: int
) -> tuple[list[tuple[int, bytes]], bytes]:
    """Every whole frame at the front of `buffer` as (kind, payload), and the bytes left over."""
    frames: list[tuple[int, bytes]] = []
    view = memoryview(buffer)
    at = 0
    while len(view) - at >= HEADER_SIZE:
        kind, length = decode_header(
            bytes(view[at : at + HEADER_SIZE]), allowed=allowed, max_length=max_length
        )
        end = at + HEADER_SIZE + length
        if end > len(view):
            break
        frames.append((kind, bytes(view[at + HEADER_SIZE : end])))
        at = end
    return frames, bytes(view[at:])


def endpoint(path: str) -> str:
    """The endpoint string for a framed socket at `path`."""
    return SCHEME + path


def socket_path(endpoint: str) -> str | None:
    """The socket path of a framed endpoint; None for any other endpoint (gRPC host:port)."""
    if not endpoint.startswith(SCHEME):
        return None
    path = endpoint[len(SCHEME) :]
    if not path:
        raise ValueError(f"framed endpoint {endpoint!r} names no socket path")
    return path

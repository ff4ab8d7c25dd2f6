"""Protocol: how our tensors travel inside TorchServe's `input` map and `prediction` bytes.

TorchServe's gRPC API carries opaque bytes: `map<string, bytes> input` in, one `bytes
prediction` out. This module is the one framing for both ends, imported by the gateway's
TorchServe backend and by our handler (shipped inside each .mar, so it depends on the
standard library only: no numpy, no gateway imports).

A *frame* is one tensor, all integers little-endian:

    b"SGT1" | u8 len | datatype (ASCII, a v2 name) | u8 ndim | ndim x i64 dims | raw

`raw` is the tensor's row-major little-endian bytes as `gateway.tensors.encode_raw` writes
them. A request puts one frame per input tensor under the tensor's name in `input`.

A *bundle* is several named frames, for `prediction` (a model may have several outputs):

    b"SGB1" | u32 count | count x (u16 len | name (UTF-8) | u64 len | frame)

Decoding never trusts a length: every malformed buffer raises ValueError.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

FRAME_MAGIC = b"SGT1"
BUNDLE_MAGIC = b"SGB1"
CONTENT_TYPE = "application/octet-stream"
MAX_DIMS = 32

_DIM = struct.Struct("<q")
_COUNT = struct.Struct("<I")
_NAME_LEN = struct.Struct("<H")
_FRAME_LEN = struct.Struct("<Q")

Frame = tuple[str, tuple[int, ...], memoryview]
"""A decoded tensor: (v2 datatype, shape, raw bytes as a view of the buffer)."""


def frame(datatype: str, shape: tuple[int, ...] | list[int], raw: bytes | memoryview) -> bytes:
    """One tensor as a frame. Raises ValueError for a name or shape that cannot be framed."""
    name = datatype.encode("ascii")
    if not 0 < len(name) < 256:
        raise ValueError(f"datatype name must be 1..255 ASCII bytes, got {datatype!r}")
    if len(shape) > MAX_DIMS:
        raise ValueError(f"at most {MAX_DIMS} dims, got {len(shape)}")
    if any(int(d) < 0 for d in shape):
        raise ValueError(f"dims must be >= 0, got {list(shape)}")
    dims = b"".join(_DIM.pack(int(d)) for d in shape)
    return b"".join((FRAME_MAGIC, bytes((len(name),)), name, bytes((len(shape),)), dims, raw))


def unframe(buf: bytes | bytearray | memoryview) -> Frame:
    """The inverse of `frame`; the raw part is a zero-copy view of `buf`."""
    view = memoryview(buf).cast("B")
    if bytes(view[:4]) != FRAME_MAGIC:
        raise ValueError("not a tensor frame (bad magic)")
    pos = 4
    name_len = _byte(view, pos)
    pos += 1
    if name_len == 0 or pos + name_len > len(view):
        raise ValueError("tensor frame truncated in its datatype")
    try:
        datatype = bytes(view[pos : pos + name_len]).decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("tensor frame datatype is not ASCII") from None
    pos += name_len
    ndim = _byte(view, pos)
    pos += 1
    if ndim > MAX_DIMS or pos + ndim * _DIM.size > len(view):
        raise ValueError("tensor frame truncated in its shape")
    shape = tuple(_DIM.unpack_from(view, pos + i * _DIM.size)[0] for i in range(ndim))
    if any(d < 0 for d in shape):
        raise ValueError(f"tensor frame has a negative dim: {list(shape)}")
    return datatype, shape, view[pos + ndim * _DIM.size :]


def bundle(frames: Mapping[str, bytes]) -> bytes:
    """Named frames (name -> `frame(...)` bytes) as one buffer."""
    parts = [BUNDLE_MAGIC, _COUNT.pack(len(frames))]
    for name, data in frames.items():
        encoded = name.encode("utf-8")
        if len(encoded) > 0xFFFF:
            raise ValueError(f"tensor name too long ({len(encoded)} bytes)")
        parts += [_NAME_LEN.pack(len(encoded)), encoded, _FRAME_LEN.pack(len(data)), data]
    return b"".join(parts)


def unbundle(buf: bytes | bytearray | memoryview) -> dict[str, Frame]:
    """The inverse of `bundle`, each frame decoded; names must be unique."""
    view = memoryview(buf).cast("B")
    if bytes(view[:4]) != BUNDLE_MAGIC or len(view) < 4 + _COUNT.size:
        raise ValueError("not a tensor bundle (bad magic)")
    (count,) = _COUNT.unpack_from(view, 4)
    pos = 4 + _COUNT.size
    out: dict[str, Frame] = {}
    for i in range(count):
        if pos + _NAME_LEN.size > len(view):
            raise ValueError(f"tensor bundle ends after {i} of {count} tensors")
        (name_len,) = _NAME_LEN.unpack_from(view, pos)
        pos += _NAME_LEN.size
        if pos + name_len + _FRAME_LEN.size > len(view):
            raise ValueError(f"tensor bundle truncated in the name of tensor {i}")
        try:
            name = bytes(view[pos : pos + name_len]).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"tensor bundle: name of tensor {i} is not UTF-8") from None
        pos += name_len
        (frame_len,) = _FRAME_LEN.unpack_from(view, pos)
        pos += _FRAME_LEN.size
        if pos + frame_len > len(view):
            raise ValueError(f"tensor bundle: tensor {name!r} claims bytes past the end")
        if name in out:
            raise ValueError(f"tensor bundle names {name!r} twice")
        out[name] = unframe(view[pos : pos + frame_len])
        pos += frame_len
    if pos != len(view):
        raise ValueError(f"{len(view) - pos} bytes left over after {count} bundled tensors")
    return out


def _byte(view: memoryview, pos: int) -> int:
    if pos >= len(view):
        raise ValueError("tensor frame truncated in its header")
    return int(view[pos])

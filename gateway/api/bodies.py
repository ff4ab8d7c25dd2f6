"""API: reading an HTTP request's body and its length headers, within every limit.

413 before reading when Content-Length says too much, 408 when the client is too slow to
send, gzip/deflate bodies decompressed within the same limit; length headers are ASCII
digits or a 400.
"""

from __future__ import annotations

import asyncio
import zlib

from fastapi import Request

from gateway.errors import BadRequest, PayloadTooLarge, RequestTimeout
from gateway.protocol import v2_http


def _digits(value: str, what: str) -> int:
    """A header that must be a non-negative decimal integer (ASCII digits only: str.isdigit
    also admits '²' and other digits int() refuses)."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        raise BadRequest(f"{what} must be a non-negative integer")
    return int(value)


def declared_length(request: Request, limit: int) -> int | None:
    """Content-Length, if given; 413 at once when it is past `limit`."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    declared = _digits(value, "Content-Length")
    if declared > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    return declared


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, decompressed if gzip/deflate; 413 past `limit` either way, 408 when
    the client has not sent it all within `timeout`."""
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"request body not received within {timeout:g} s") from None
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        body = _decompress(body, encoding, limit)
    elif encoding not in ("", "identity"):
        raise BadRequest(f"unsupported Content-Encoding '{encoding}'")
    return body


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    return out


def header_length(request: Request) -> int | None:
    value = request.headers.get(v2_http.HEADER_LENGTH)
    return None if value is None else _digits(value, "Inference-Header-Content-Length")

"""Backends: the framed Unix-socket transport to a local v2 runner (protocol/framed.py).

A small pool of connections, one request in flight on each: an idle one is reused, a new
one is opened while fewer than `max_connections` are open, else the call waits for one
(within its deadline). A connection that errors, times out or is cancelled mid-call is
closed and dropped, never reused mid-frame. A runner that went away fails the call at
once with Unavailable, not at its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.backends.base import map_status
from gateway.errors import DeadlineExceeded, GatewayError, Unavailable, Unreachable
from gateway.protocol import framed

log = logging.getLogger(__name__)

_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]

# Above this, a payload is written after its header rather than copied into one frame.
_COPY_BELOW = 64 * 1024


class FramedPool:
    """Connections to one runner's framed socket; `call` sends one frame, returns its answer."""

    def __init__(
        self, variant: str, path: str, *, max_frame_bytes: int, max_connections: int = 16
    ) -> None:
        self.variant = variant
        self.path = path
        self._max_frame = max_frame_bytes
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    async def call(self, kind: int, payload: bytes, *, timeout: float) -> bytes:
        """The OK payload answering (kind, payload); raises the mapped GatewayError otherwise.

        A reused idle connection whose runner died since its last call (its hang-up not yet
        read) fails before any answer: the frame then goes once more, on a new connection;
        a runner that is not there refuses that one, which is Unreachable (never sent).
        """
        if self._closed:
            raise Unavailable(f"variant '{self.variant}': client closed")
        conn: _Conn | None = None
        try:
            async with asyncio.timeout(timeout):
                async with self._slots:
                    conn = self._take()
                    if conn is not None:
                        try:
                            status, answer = await self._exchange(conn, kind, payload)
                        except (asyncio.IncompleteReadError, ConnectionError):
                            _close(conn)
                            conn = None
                    if conn is None:
                        try:
                            conn = await self._open()
                        except OSError as exc:
                            raise Unreachable(
                                f"variant '{self.variant}': UNAVAILABLE: the runner is "
                                f"unreachable ({_why(exc)})"
                            ) from None
                        status, answer = await self._exchange(conn, kind, payload)
                    if not self._closed:  # closed meanwhile: the finally below drops it
                        self._idle.append(conn)
                        conn = None
        except TimeoutError:
            raise DeadlineExceeded(
                f"variant '{self.variant}': DEADLINE_EXCEEDED: no answer in {timeout:.3f} s"
            ) from None
        except (OSError, asyncio.IncompleteReadError, framed.FrameError) as exc:
            log.debug("variant %s: framed socket %s: %r", self.variant, self.path, exc)
            raise Unavailable(
                f"variant '{self.variant}': UNAVAILABLE: the runner is unreachable "
                f"({_why(exc)})"
            ) from None
        finally:
            if conn is not None:  # failed, timed out or cancelled mid-frame
                _close(conn)
        if status == framed.OK:
            return answer
        try:
            code, message = framed.decode_error(answer)
        except framed.FrameError as exc:
            raise GatewayError(f"variant '{self.variant}': malformed error frame: {exc}") from None
        raise map_status(self.variant, code, message)

    def _take(self) -> _Conn | None:
        """An idle connection whose peer has not hung up since its last call."""
        while self._idle:
            reader, writer = self._idle.pop()
            if reader.at_eof() or writer.is_closing():
                _close((reader, writer))
                continue
            return reader, writer
        return None

    async def _open(self) -> _Conn:
        return await asyncio.open_unix_connection(self.path)

    async def _exchange(self, conn: _Conn, kind: int, payload: bytes) -> tuple[int, bytes]:
        reader, writer = conn
        if len(payload) < _COPY_BELOW:
            writer.write(framed.encode(kind, payload))
        else:
            writer.writelines((framed.header(kind, len(payload)), payload))
            await writer.drain()
        head = await reader.readexactly(framed.HEADER_SIZE)
        status, length = framed.decode_header(
            head, allowed=framed.RESPONSE_STATUSES, max_length=self._max_frame
        )
        return status, await reader.readexactly(length)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)
        for _, writer in idle:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _close(conn: _Conn) -> None:
    conn[1].close()


def _why(exc: BaseException) -> str:
    """What went wrong on the socket, in words that name no path."""
    if isinstance(exc, asyncio.IncompleteReadError):
        return "it hung up mid-answer"
    if isinstance(exc, framed.FrameError):
        return "it answered a malformed frame"
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return "not listening"
    return type(exc).__name__

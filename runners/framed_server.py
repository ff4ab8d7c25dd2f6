"""Runner host: the framed v2 protocol (gateway/protocol/framed.py) on a Unix socket.

The gateway's hop to a runner on the same machine: the same ModelInfer/ModelReady
messages as gRPC, through the same service methods (one path for validation, predict and
errors), minus HTTP/2. Each connection carries one request at a time, answered in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

import grpc
from google.protobuf.message import DecodeError

from gateway.errors import GatewayError
from gateway.protocol import framed
from gateway.protocol.grpc_errors import internal
from gateway.protocol.pb import v2_pb2 as pb

log = logging.getLogger("servegate.runner.framed")

MAX_FRAME_BYTES = 256 * 1024 * 1024  # as the runner's gRPC message limit


class Service(Protocol):
    def infer(self, msg: pb.ModelInferRequest) -> Awaitable[pb.ModelInferResponse]: ...

    def ready(self, req: pb.ModelReadyRequest) -> pb.ModelReadyResponse: ...


def _error(code: grpc.StatusCode, message: str) -> bytes:
    return framed.encode(framed.ERROR, framed.encode_error(code.value[0], message))


async def answer(service: Service, kind: int, payload: bytes) -> bytes:
    """The whole answer frame for one request frame; every failure becomes an ERROR frame."""
    try:
        if kind == framed.INFER:
            reply: bytes = (
                await service.infer(pb.ModelInferRequest.FromString(payload))
            ).SerializeToString()
        else:
            reply = service.ready(pb.ModelReadyRequest.FromString(payload)).SerializeToString()
    except DecodeError:
        return _error(grpc.StatusCode.INVALID_ARGUMENT, "undecodable request message")
    except GatewayError as exc:
        return _error(exc.grpc_code, exc.message)
    except Exception:
        error = internal(log, "framed call")
        return _error(error.grpc_code, error.message)
    return framed.encode(framed.OK, reply)


class FramedServer:
    """Serves `service` on a Unix socket until `aclose`.

    Each connection is a task; one waiting for its next frame is idle, one between a
    frame and its answer is busy. `aclose` stops listening, hangs up idle connections at
    once and lets busy ones finish their answer (within `grace`), so a drain loses nothing
    in flight: the gateway sees a closed idle connection and opens a new one elsewhere.
    """

    def __init__(self, path: Path, service: Service) -> None:
        self.path = path
        self._service = service
        self._server: asyncio.Server | None = None
        self._idle: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._busy: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self) -> None:
        """Listening once this returns; a stale socket file from an earlier run is replaced."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._connection, path=str(self.path))

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            while not self._closing:
                self._idle[task] = writer
                head = await reader.readexactly(framed.HEADER_SIZE)
                del self._idle[task]
                self._busy.add(task)
                try:
                    kind, length = framed.decode_header(
                        head, allowed=framed.REQUEST_KINDS, max_length=MAX_FRAME_BYTES
                    )
                except framed.FrameError as exc:
                    # The stream cannot be re-synchronised: say why, then hang up.
                    writer.write(_error(grpc.StatusCode.INVALID_ARGUMENT, str(exc)))
                    await writer.drain()
                    return
                payload = await reader.readexactly(length)
                writer.write(await answer(self._service, kind, payload))
                await writer.drain()
                self._busy.discard(task)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the gateway hung up (or timed out and dropped this connection)
        finally:
            self._idle.pop(task, None)
            self._busy.discard(task)
            writer.close()

    async def aclose(self, grace: float = 5.0) -> None:
        """Drains: stop listening, hang up idle connections, let busy ones answer."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._idle.values()):
            writer.close()
        if self._busy:
            await asyncio.wait(set(self._busy), timeout=grace)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


async def serve_framed(path: Path, service: Service) -> FramedServer:
    """A FramedServer for `service`, listening on `path` once this returns."""
    server = FramedServer(path, service)
    await server.start()
    return server

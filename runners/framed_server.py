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
    except DecodeError as exc:
        return _error(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request message: {exc}")
    except GatewayError as exc:
        return _error(exc.grpc_code, exc.message)
    except Exception as exc:
        log.exception("runner error")
        return _error(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
    return framed.encode(framed.OK, reply)


class FramedServer:
    """Serves `service` on a Unix socket until `aclose`."""

    def __init__(self, server: asyncio.Server, path: Path) -> None:
        self._server = server
        self.path = path

    async def aclose(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


async def serve_framed(path: Path, service: Service) -> FramedServer:
    """Listening once this returns; a stale socket file from an earlier run is replaced."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(framed.HEADER_SIZE)
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
                writer.write(await answer(service, kind, payload))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the gateway hung up (or timed out and dropped this connection)
        finally:
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(connection, path=str(path))
    return FramedServer(server, path)

"""The fleet's control messages: errors and runner states survive the trip."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.errors import BadRequest, GatewayError, Overloaded, Unreachable
from gateway.fleet.wire import Channel, error_doc, error_from, status_doc, status_from
from gateway.health import RunnerState, RunnerStatus


@pytest.mark.parametrize(
    "exc",
    [BadRequest("no such field"), Overloaded("busy", retry_after=0.25), Unreachable("gone")],
)
def test_gateway_errors_keep_their_class_message_and_hint(exc: GatewayError) -> None:
    back = error_from(error_doc(exc))
    assert type(back) is type(exc)
    assert back is not None and back.message == exc.message
    assert back.retry_after == exc.retry_after


def test_other_errors_travel_as_internal_ones_and_none_as_none() -> None:
    back = error_from(error_doc(KeyError("x")))
    assert type(back) is GatewayError and "KeyError" in back.message
    assert error_doc(None) is None and error_from(None) is None
    assert type(error_from({"type": "NoSuchError", "message": "m"})) is GatewayError


def test_runner_status_round_trip() -> None:
    status = RunnerStatus(
        "torchserve", RunnerState.RESTARTING, "exited with -9", restarts=3,
        endpoint="127.0.0.1:7070", pid=42, key_file=Path("/tmp/key.json"), standby=True,
    )  # fmt: skip
    assert status_from(status_doc(status)) == status
    bare = RunnerStatus("onnx", RunnerState.READY)
    assert status_from(status_doc(bare)) == bare


async def test_channel_carries_messages_and_reports_the_close(tmp_path: Path) -> None:
    got: asyncio.Queue[dict[str, object] | None] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = Channel(reader, writer)
        while True:
            msg = await channel.receive()
            await got.put(msg)
            if msg is None:
                return

    path = str(tmp_path / "c.sock")
    server = await asyncio.start_unix_server(serve, path)
    client = await Channel.connect(path)
    client.send("hello", index=1, pid=7)
    client.send("ask", id=1, action="fault", args={"doc": None})
    assert await got.get() == {"op": "hello", "index": 1, "pid": 7}
    assert await got.get() == {"op": "ask", "id": 1, "action": "fault", "args": {"doc": None}}
    client.close()
    assert await got.get() is None
    server.close()


async def test_a_line_that_is_not_a_message_is_refused(tmp_path: Path) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"[1, 2]\n")
        await writer.drain()

    path = str(tmp_path / "c.sock")
    server = await asyncio.start_unix_server(serve, path)
    client = await Channel.connect(path)
    with pytest.raises(ValueError, match="not a control message"):
        await client.receive()
    client.close()
    server.close()

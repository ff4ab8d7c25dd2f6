"""Fleet: the messages between the primary and its workers, as JSON lines on a Unix socket.

Each message is one JSON object on one line, with an `op`:

    worker -> primary   hello {index, pid}        first message of a connection
                        ready {}                  front ends bound, serving
                        ask {id, action, args}    a change a client asked of this worker
                        stuck {kind, reason}      the watchdog found a runner hung
                        done {id, error}          an `apply` was carried out (error: null)
    primary -> worker   apply {id, action, args}  carry out a change (install, remove,
                                                  settle, routing, fault, ready)
                        status {status}           a runner's new state
                        answer {id, error}        the outcome of an `ask`

Errors travel as {type, message, retry_after}; `type` names a class of gateway/errors.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.health import RunnerState, RunnerStatus

MAX_LINE = 1 << 20
"""The longest message: the biggest is a model's routing or a fault, a few hundred bytes."""


def _error_types() -> dict[str, type[GatewayError]]:
    found: dict[str, type[GatewayError]] = {}
    todo: list[type[GatewayError]] = [GatewayError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


ERROR_TYPES = _error_types()


def error_doc(exc: BaseException | None) -> dict[str, Any] | None:
    """`exc` as a message field; an error that is not a GatewayError travels as one."""
    if exc is None:
        return None
    if isinstance(exc, GatewayError):
        return {"type": type(exc).__name__, "message": exc.message, "retry_after": exc.retry_after}
    return {"type": "GatewayError", "message": f"{type(exc).__name__}: {exc}"}


def error_from(doc: dict[str, Any] | None) -> GatewayError | None:
    """The GatewayError an `error` field stands for (None for none)."""
    if doc is None:
        return None
    cls = ERROR_TYPES.get(str(doc.get("type")), GatewayError)
    return cls(str(doc.get("message", "")), retry_after=doc.get("retry_after"))


def status_doc(status: RunnerStatus) -> dict[str, Any]:
    return {
        "kind": status.kind, "state": status.state.value, "reason": status.reason,
        "restarts": status.restarts, "endpoint": status.endpoint, "pid": status.pid,
        "key_file": str(status.key_file) if status.key_file else None,
        "standby": status.standby,
    }  # fmt: skip


def status_from(doc: dict[str, Any]) -> RunnerStatus:
    return RunnerStatus(
        kind=doc["kind"], state=RunnerState(doc["state"]), reason=doc["reason"],
        restarts=doc["restarts"], endpoint=doc["endpoint"], pid=doc["pid"],
        key_file=Path(doc["key_file"]) if doc["key_file"] else None, standby=doc["standby"],
    )  # fmt: skip


class Channel:
    """One end of a control connection: writes messages, reads them one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, path: str) -> Channel:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE)
        return cls(reader, writer)

    def send(self, op: str, **fields: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(orjson.dumps({"op": op, **fields}) + b"\n")

    async def receive(self) -> dict[str, Any] | None:
        """The next message; None once the other end has closed the connection."""
        try:
            line = await self.reader.readline()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            return None
        if not line:
            return None
        doc = orjson.loads(line)
        if not isinstance(doc, dict) or "op" not in doc:
            raise ValueError(f"not a control message: {line[:200]!r}")
        return doc

    def close(self) -> None:
        self.writer.close()

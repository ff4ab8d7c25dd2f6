"""Load tests: the Locust users (HTTP JSON, HTTP binary, gRPC) and the plan they share.

Imported only by the locustfile, inside a Locust (gevent) process; gRPC must have been
switched to gevent (`grpc.experimental.gevent.init_gevent()`) before this module opens
a channel. Every user is closed-loop (no wait between requests), sends pre-encoded
bodies from `Plan`, checks every answer, and reports each request to Locust's
statistics like a built-in user: a transport error, an error status or a wrong answer
is a failure.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import grpc
from locust import FastHttpUser, User, constant, task
from locust.env import Environment

from loadtests import wire
from loadtests.workload import Workload

MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class WrongAnswer(Exception):
    """The server answered, but not what the model computes."""


@dataclass(frozen=True)
class Plan:
    """What every user of one Locust run sends, where, and how answers are judged."""

    name: str  # the stats entry, e.g. "digits@onnx b=1"
    protocol: str  # one of wire.PROTOCOLS
    wire_name: str  # for gRPC: one of wire.WIRES
    model_ref: str  # the model name on the wire ("digits@onnx" through the gateway)
    workload: Workload
    grpc_address: str
    timeout_s: float
    http_bodies: tuple[wire.HttpBody, ...] = field(default=())
    grpc_bodies: tuple[bytes, ...] = field(default=())
    grpc_metadata: tuple[tuple[str, str], ...] | None = None  # e.g. TorchServe's token


def make_plan(
    *,
    protocol: str,
    wire_name: str,
    model_ref: str,
    workload: Workload,
    grpc_address: str,
    timeout_s: float,
) -> Plan:
    """Encodes every distinct batch once for the chosen protocol."""
    if protocol not in wire.PROTOCOLS:
        raise ValueError(f"protocol must be one of {wire.PROTOCOLS}, got {protocol!r}")
    if wire_name not in wire.GRPC_WIRES:
        raise ValueError(f"wire must be one of {wire.WIRES}, got {wire_name!r}")
    if protocol != "grpc" and wire_name != "v2":
        raise ValueError(f"{wire_name} runners are reached over gRPC only")
    name = f"{model_ref} b={workload.batch_size}"
    http_bodies: tuple[wire.HttpBody, ...] = ()
    grpc_bodies: tuple[bytes, ...] = ()
    if protocol == "grpc":
        encode = wire.GRPC_WIRES[wire_name].encode
        grpc_bodies = tuple(encode(model_ref, workload.input_name, b) for b in workload.batches)
    else:
        binary = protocol == "http-binary"
        http_bodies = tuple(
            wire.http_body(model_ref, workload.input_name, b, binary=binary)
            for b in workload.batches
        )
    return Plan(
        name, protocol, wire_name, model_ref, workload, grpc_address, timeout_s,
        http_bodies, grpc_bodies,
    )  # fmt: skip


class _Cycle:
    """A user's position in the plan's batches; users start at random offsets."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.next = random.randrange(count)

    def take(self) -> int:
        i = self.next
        self.next = (i + 1) % self.count
        return i


class _HttpInferUser(FastHttpUser):
    """v2 HTTP infer over geventhttpclient. It writes headers and body in one send, so
    small bodies meet no Nagle + delayed-ACK stall (measured: c=1 p50 ~1.3 ms, not 40 ms)."""

    abstract = True
    wait_time = constant(0)
    plan: ClassVar[Plan]

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._cycle = _Cycle(len(self.plan.http_bodies))
        self._path = wire.http_path(self.plan.model_ref)

    @task
    def infer(self) -> None:
        i = self._cycle.take()
        body = self.plan.http_bodies[i]
        with self.client.post(
            self._path,
            data=body.body,
            headers=dict(body.headers),
            name=self.plan.name,
            catch_response=True,
        ) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}: {_error_text(reply.content)}")
                return
            try:
                outputs = wire.decode_http(
                    reply.content or b"", reply.headers.get("inference-header-content-length")
                )
            except Exception as exc:  # any undecodable answer is a failure, not a crash
                reply.failure(f"undecodable answer: {exc!r}")
                return
            problem = self.plan.workload.check(i, outputs)
            if problem is not None:
                reply.failure(WrongAnswer(problem))


class HttpJsonUser(_HttpInferUser):
    """v2 HTTP with JSON tensors (`--protocol http-json`)."""


class HttpBinaryUser(_HttpInferUser):
    """v2 HTTP with the binary tensor data extension (`--protocol http-binary`)."""


class GrpcUser(User):
    """Unary gRPC inference on one channel per user: v2 ModelInfer (the gateway and the
    onnx/jax runners), TorchServe's Predictions or TF Serving's Predict (`--wire`)."""

    wait_time = constant(0)
    plan: ClassVar[Plan]

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._wire = wire.GRPC_WIRES[self.plan.wire_name]
        self._cycle = _Cycle(len(self.plan.grpc_bodies))
        self._channel: grpc.Channel | None = None

    def on_start(self) -> None:
        self._channel = grpc.insecure_channel(
            self.plan.grpc_address,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # one connection per user, like one HTTP connection per HTTP user
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )
        # bytes in, bytes out: serialization happened when the plan was made
        self._call = self._channel.unary_unary(self._wire.path)

    def on_stop(self) -> None:
        if self._channel is not None:
            self._channel.close()

    @task
    def infer(self) -> None:
        i = self._cycle.take()
        body = self.plan.grpc_bodies[i]
        exception: Exception | None = None
        reply = b""
        start = time.perf_counter()
        try:
            reply = self._call(body, timeout=self.plan.timeout_s, metadata=self.plan.grpc_metadata)
        except grpc.RpcError as exc:
            exception = _RpcFailure(exc)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if exception is None:
            try:
                problem = self.plan.workload.check(i, self._wire.decode(reply))
            except Exception as exc:  # any undecodable answer is a failure, not a crash
                problem = f"undecodable answer: {exc!r}"
            if problem is not None:
                exception = WrongAnswer(problem)
        self.environment.events.request.fire(
            request_type="gRPC",
            name=self.plan.name,
            response_time=elapsed_ms,
            response_length=len(reply),
            response=reply,
            context={},
            exception=exception,
        )


class _RpcFailure(Exception):
    """A gRPC error as Locust shows it: the status code and the server's message."""

    def __init__(self, exc: grpc.RpcError) -> None:
        code: Any = getattr(exc, "code", lambda: None)()
        details: Any = getattr(exc, "details", lambda: "")()
        super().__init__(f"{getattr(code, 'name', code)}: {details}")


def _error_text(content: bytes | None) -> str:
    text = (content or b"")[:200].decode("utf-8", "replace")
    return text.strip() or "(empty body)"


USER_CLASSES: dict[str, type[User]] = {
    "http-json": HttpJsonUser,
    "http-binary": HttpBinaryUser,
    "grpc": GrpcUser,
}

"""Load tests: async senders for the open-loop engine — v2 gRPC and v2 HTTP binary.

Each sender is `async (index, timeout_s) -> code`: it sends pre-encoded batch
`index % len(batches)` of a Workload (bodies built once, before the clock starts, by
the gateway's own codecs in loadtests/wire.py) and returns how the request ended: the
gRPC status name ("OK", "RESOURCE_EXHAUSTED", ...), the HTTP status ("200", "429", ...),
"CLIENT_TIMEOUT", "WRONG_ANSWER", or "transport:<error>" (see loadtests/arrivals.py).

The deadline travels with the request, as a well-behaved client sends it: gRPC's own
deadline, and on HTTP the v2 `timeout` parameter (microseconds) besides the client's
timeout, so the gateway can drop work whose caller gave up. Every `check_every`-th
answer is decoded and checked (shape and class) so a wrong answer is not counted as
served, without spending the generator's CPU decoding them all.
"""

from __future__ import annotations

import asyncio

import aiohttp
import grpc

from loadtests import wire
from loadtests.arrivals import TRANSPORT_PREFIX, WRONG_ANSWER
from loadtests.workload import Workload

PROTOCOLS = ("grpc", "http-binary")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
EXAMPLE_CHARS = 200


class Examples(dict[str, str]):
    """code -> the first message seen with it (what a 429 or a CANCELLED said)."""

    def note(self, code: str, message: str) -> None:
        if code not in self:
            self[code] = message[:EXAMPLE_CHARS]


def _checked(index: int, every: int) -> bool:
    return every > 0 and index % every == 0


class GrpcSender:
    """v2 ModelInfer over one grpc.aio channel (HTTP/2 multiplexes every request on it)."""

    def __init__(
        self,
        address: str,
        model_ref: str,
        workload: Workload,
        *,
        check_every: int = 100,
        api_key: str | None = None,
    ) -> None:
        self.workload = workload
        self.bodies = tuple(
            wire.v2_grpc_body(model_ref, workload.input_name, b) for b in workload.batches
        )
        self.check_every = max(0, check_every)
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        self.examples = Examples()
        self.channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        # no (de)serializers: the pre-encoded bytes go out as they are
        self._call = self.channel.unary_unary(wire.V2_INFER_PATH)

    async def send(self, k: int, timeout_s: float) -> bytes | str:
        """Body `k` sent; the answer's bytes, or the gRPC status name it failed with."""
        try:
            return await self._call(self.bodies[k], timeout=timeout_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            self.examples.note(code, exc.details() or "")
            return code

    async def __call__(self, index: int, timeout_s: float) -> str:
        k = index % len(self.bodies)
        reply = await self.send(k, timeout_s)
        if isinstance(reply, str):
            return reply
        if _checked(index, self.check_every) and self.workload.check(k, wire.decode_v2_grpc(reply)):
            return WRONG_ANSWER
        return "OK"

    async def close(self) -> None:
        await self.channel.close()


class HttpSender:
    """v2 HTTP with the binary tensor extension (aiohttp; one connection per open request,
    as HTTP/1.1 clients do; none is held back in a client-side pool queue)."""

    def __init__(
        self,
        base_url: str,
        model_ref: str,
        workload: Workload,
        *,
        deadline_s: float,
        check_every: int = 100,
    ) -> None:
        self.workload = workload
        params = {"timeout": int(deadline_s * 1e6)}
        self.bodies = tuple(
            wire.http_body(model_ref, workload.input_name, b, binary=True, parameters=params)
            for b in workload.batches
        )
        self.url = base_url.rstrip("/") + wire.http_path(model_ref)
        self.check_every = max(0, check_every)
        self.examples = Examples()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:  # needs the running loop, so not in __init__
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def __call__(self, index: int, timeout_s: float) -> str:
        k = index % len(self.bodies)
        body = self.bodies[k]
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._open().post(
                self.url, data=body.body, headers=body.headers, timeout=timeout
            ) as reply:
                data = await reply.read()
                header = reply.headers.get("Inference-Header-Content-Length")
                status = reply.status
        except TimeoutError:
            return "CLIENT_TIMEOUT"
        except (aiohttp.ClientError, OSError) as exc:
            code = f"{TRANSPORT_PREFIX}{type(exc).__name__}"
            self.examples.note(code, str(exc))
            return code
        if status != 200:
            self.examples.note(str(status), data[:EXAMPLE_CHARS].decode(errors="replace"))
        if (
            status == 200
            and _checked(index, self.check_every)
            and self.workload.check(k, wire.decode_http(data, header))
        ):
            return WRONG_ANSWER
        return str(status)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # lets aiohttp close its transports before the loop ends


Sender = GrpcSender | HttpSender


def make_sender(
    protocol: str,
    *,
    http_url: str,
    grpc_address: str,
    model_ref: str,
    workload: Workload,
    deadline_s: float,
    check_every: int = 100,
) -> Sender:
    """The sender for `protocol` (one of PROTOCOLS) against a gateway."""
    if protocol == "grpc":
        return GrpcSender(grpc_address, model_ref, workload, check_every=check_every)
    if protocol == "http-binary":
        return HttpSender(
            http_url, model_ref, workload, deadline_s=deadline_s, check_every=check_every
        )
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")

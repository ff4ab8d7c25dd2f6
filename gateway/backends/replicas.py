"""Backends: one variant served by several replicas (a runner Deployment with N pods).

A ReplicaSet is a Backend over one backend per replica endpoint. Each call goes to the
less loaded of two replicas drawn at random among those in service (power of two choices
on calls outstanding: close to least-outstanding, without every caller piling onto the
same idle one). A replica whose call fails as unavailable (refused, reset, gone) is taken
out at once, so the calls after it go to the others; a background task asks it `ready()`
every `recheck_s` and puts it back when it answers. A call that never reached its replica
(Unreachable: refused, nothing listening) goes to another one; a call that did reach it
is not sent again (it may be what killed it), so only the calls in flight on a replica
that dies are lost. Failover between variants is the router's.

Endpoints are listed (`endpoint: [h1:9000, h2:9000]` in model.yaml) or named by DNS:
`dns:///onnx-runner:9000` resolves to every address a headless Service returns, and is
resolved again every `resolve_s`, so replicas that come and go are followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.backends.base import Backend, Clock
from gateway.errors import Unavailable, Unreachable
from gateway.tensors import InferRequest, InferResponse

log = logging.getLogger("servegate.replicas")

DNS_SCHEME = "dns:///"


@dataclass(eq=False, slots=True)
class Replica:
    endpoint: str
    backend: Backend
    outstanding: int = 0
    up: bool = True


def choose(replicas: Sequence[Replica], rng: random.Random) -> Replica | None:
    """Power of two choices among the replicas in service: the fewer calls outstanding."""
    live = [r for r in replicas if r.up]
    if len(live) <= 1:
        return live[0] if live else None
    a, b = rng.sample(live, 2)
    return a if a.outstanding <= b.outstanding else b


def resolve(endpoint: str) -> list[str]:
    """`dns:///host:port` -> every `address:port` the name resolves to (blocking)."""
    host, _, port = endpoint.removeprefix(DNS_SCHEME).rpartition(":")
    infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    addresses = sorted({info[4][0] for info in infos})
    return [f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addresses]


class ReplicaSet:
    """A Backend that balances one variant's calls over its replicas."""

    def __init__(
        self,
        name: str,
        endpoints: Sequence[str],
        make: Callable[[str], Backend],
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        recheck_s: float = 1.0,
        resolve_s: float = 10.0,
    ) -> None:
        self.name = name
        self.endpoint = ",".join(endpoints)
        self._names = list(endpoints)
        self._make = make
        self._clock = clock
        self._rng = rng or random.Random()
        self._recheck_s = recheck_s
        self._resolve_s = resolve_s
        self._resolved_at = float("-inf")
        self.replicas: list[Replica] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._dns = any(e.startswith(DNS_SCHEME) for e in endpoints)
        if not self._dns:
            self._adopt(list(endpoints))
        first = self.replicas[0].backend if self.replicas else None
        self.protocol = first.protocol if first is not None else ""

    def _adopt(self, endpoints: list[str]) -> None:
        """Makes the replica list `endpoints`: new ones join, vanished ones are retired."""
        known = {r.endpoint: r for r in self.replicas}
        self.replicas = [known.get(e) or Replica(e, self._make(e)) for e in endpoints]
        for endpoint, replica in known.items():
            if endpoint not in endpoints:
                log.info("%s: replica %s is gone", self.name, endpoint)
                asyncio.get_running_loop().create_task(replica.backend.aclose())

    async def _resolve(self) -> None:
        """Lists the replicas again from the endpoints (DNS names re-resolved)."""
        self._resolved_at = self._clock()
        found: list[str] = []
        for e in self._names:
            if not e.startswith(DNS_SCHEME):
                found.append(e)
                continue
            try:
                found += await asyncio.to_thread(resolve, e)
            except (OSError, ValueError) as exc:
                log.warning("%s: cannot resolve %s: %s", self.name, e, exc)
                return  # keep what we have
        self._adopt(found)
        if self.replicas and not self.protocol:
            self.protocol = self.replicas[0].backend.protocol

    async def infer(self, request: InferRequest, *, deadline: float) -> InferResponse:
        if self._dns:
            if not self.replicas:
                await self._resolve()
            self._watch()  # keeps resolving in the background
        while True:
            replica = choose(self.replicas, self._rng)
            if replica is None:
                self._watch()
                raise Unavailable(
                    f"variant '{self.name}': no replica in service "
                    f"({len(self.replicas)} known, all failing)",
                    retry_after=self._recheck_s,
                )
            replica.outstanding += 1
            try:
                return await replica.backend.infer(request, deadline=deadline)
            except Unreachable:
                self._eject(replica)  # never sent: try another in service
            except Unavailable:
                self._eject(replica)
                raise
            finally:
                replica.outstanding -= 1

    def _eject(self, replica: Replica) -> None:
        if replica.up:
            log.warning("%s: replica %s taken out of service", self.name, replica.endpoint)
            replica.up = False
        self._watch()

    def _watch(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._recheck(), name=f"replicas {self.name}")

    async def _recheck(self) -> None:
        """Probes the replicas out of service until all are back (and, for DNS names,
        resolves them again every resolve_s, for as long as the set lives)."""
        try:
            while self._dns or any(not r.up for r in self.replicas):
                await asyncio.sleep(self._recheck_s)
                if self._dns and self._clock() - self._resolved_at > self._resolve_s:
                    await self._resolve()
                for r in [r for r in self.replicas if not r.up]:
                    if await r.backend.ready():
                        log.info("%s: replica %s back in service", self.name, r.endpoint)
                        r.up = True
        finally:
            self._task = None

    async def ready(self) -> bool:
        """Ready while any replica is; a replica out of service that answers comes back."""
        if not self.replicas:
            await self._resolve()
        ready = False
        for r in self.replicas:
            if await r.backend.ready():
                r.up = ready = True
        return ready

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for r in self.replicas:
            await r.backend.aclose()

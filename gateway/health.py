"""Health: runner states from the supervisor, and the watchdog that finds hung runners.

A runner can hang where no process check sees it: the process lives, its event loop
answers health checks, but a model call never returns. The watchdog sees it from the
gateway's side, through the inference path: when a runner call is still unanswered after
`hang_timeout_s`, or a call gave up at its deadline, it sends that variant one small probe
request (zeros of the signature's shapes, batch 1) straight to its backend. A probe that
gets no answer within `hang_timeout_s` means the runner is stuck: `on_stuck` is told (the
supervisor restarts a local runner). A slow but working runner answers the probe, so load
alone never looks like a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from gateway.errors import DeadlineExceeded, GatewayError

log = logging.getLogger("servegate.health")

Clock = Callable[[], float]


class RunnerState(StrEnum):
    """A runner's lifecycle, as the supervisor sees it."""

    STARTING = "STARTING"
    READY = "READY"
    RESTARTING = "RESTARTING"
    FAILED = "FAILED"  # crash-looping: not restarted again
    STOPPED = "STOPPED"


@dataclass(frozen=True, slots=True)
class RunnerStatus:
    """What the supervisor tells the dataplane about one local runner."""

    kind: str
    state: RunnerState
    reason: str = ""
    restarts: int = 0
    endpoint: str = ""  # where the gateway reaches it (framed socket or gRPC host:port)
    pid: int | None = None
    key_file: Path | None = None  # its token-authorization keys (TorchServe), if any
    standby: bool = False  # a warm standby is ready to take over


Probe = Callable[[float], Awaitable[object]]
"""Sends one small request to a variant's runner with the given deadline."""


class Progress:
    """One variant's runner calls in flight, and the oldest one's start."""

    def __init__(self) -> None:
        self._started: dict[int, float] = {}
        self._ids = itertools.count()
        self.gave_up = False  # a call ended at its deadline since the last look

    def begin(self, now: float) -> int:
        call = next(self._ids)
        self._started[call] = now
        return call

    def end(self, call: int, *, answered: bool) -> None:
        self._started.pop(call, None)
        if not answered:
            self.gave_up = True

    def oldest_age(self, now: float) -> float:
        return now - min(self._started.values()) if self._started else 0.0


class Watchdog:
    """Probes a variant whose calls go unanswered; reports the ones whose probe hangs too."""

    def __init__(
        self,
        *,
        hang_timeout_s: float,
        on_stuck: Callable[[str, str], None],
        clock: Clock,
    ) -> None:
        self.hang_timeout_s = hang_timeout_s
        self._on_stuck = on_stuck
        self._clock = clock
        self._progress: dict[str, Progress] = {}
        self._probes: dict[str, Probe] = {}
        self._probing: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, variant: str, probe: Probe, progress: Progress) -> None:
        """Starts watching `variant` (model@variant), whose calls report to `progress`."""
        self._probes[variant] = probe
        self._progress[variant] = progress

    def forget(self, variant: str) -> None:
        self._probes.pop(variant, None)
        self._progress.pop(variant, None)

    def start(self) -> None:
        if self._task is None and self.hang_timeout_s > 0:
            self._task = asyncio.create_task(self._run(), name="watchdog")

    async def _run(self) -> None:
        tick = min(1.0, self.hang_timeout_s / 4)
        while True:
            await asyncio.sleep(tick)
            self.check()

    def check(self) -> None:
        """Starts a probe for every variant with a call unanswered too long or given up."""
        now = self._clock()
        for variant, progress in list(self._progress.items()):
            suspicious = progress.gave_up or progress.oldest_age(now) > self.hang_timeout_s
            progress.gave_up = False
            if suspicious and variant not in self._probing:
                self._probing[variant] = asyncio.create_task(
                    self._probe(variant), name=f"probe {variant}"
                )

    async def _probe(self, variant: str) -> None:
        try:
            await self._probes[variant](self._clock() + self.hang_timeout_s)
        except DeadlineExceeded:
            reason = f"no answer to a probe request in {self.hang_timeout_s:g} s (hung)"
            log.error("variant %s: %s", variant, reason)
            self._on_stuck(variant, reason)
        except GatewayError:
            pass  # it answered (an error is an answer), or it is down: not a hang
        except Exception:
            log.exception("probe of %s failed", variant)
        finally:
            self._probing.pop(variant, None)

    async def aclose(self) -> None:
        tasks = [t for t in (self._task, *self._probing.values()) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._task = None

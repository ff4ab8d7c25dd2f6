"""Supervisor: one runner kind's slot and the watcher that keeps it alive.

A slot holds the runner that serves its kind, what happened to it (state, reason,
restarts, recent deaths) and, for a kind that keeps one, its warm standby. Its watcher
waits on the runner's exit (a pidfd: no polling) and probes its health every
`probing.interval_s`; a death, or `probing.failures` probes missed in a row, ends in the
standby taking over (if one is ready) or a restart after the policy's backoff, until the
deaths in the window make a crash loop: then FAILED, and no more restarts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.health import RunnerState, RunnerStatus
from gateway.kinds import RunnerKind
from gateway.supervisor.process import Runner, RunnerFailed
from gateway.supervisor.restarts import DeathLog, RestartPolicy

log = logging.getLogger("servegate.supervisor")


@dataclass(frozen=True, slots=True)
class Probing:
    """How often a live runner's health is read, and how many misses mean it is hung."""

    interval_s: float = 1.0
    timeout_s: float = 2.0
    failures: int = 3


@dataclass(frozen=True, slots=True)
class Keeping:
    """What every slot's watcher works with: the policies, the clock and the rng."""

    policy: RestartPolicy
    probing: Probing
    clock: Callable[[], float]
    rng: random.Random
    host: str


@dataclass(slots=True)
class RunnerSlot:
    """One runner kind: the runner serving it and what its watcher knows."""

    kind: RunnerKind
    runner: Runner
    keeping: Keeping
    emit: Callable[[RunnerSlot], None]  # tells the listeners the slot's status changed
    endpoint: Callable[[Runner], str]  # where the gateway reaches a runner
    deaths: DeathLog = field(init=False)
    state: RunnerState = RunnerState.STARTING
    reason: str = ""
    restarts: int = 0
    kill_reason: str = ""  # why the supervisor killed it, for the death that follows
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    spare: Runner | None = None  # the warm standby, for a kind that keeps one
    spare_ready: bool = False
    spare_task: asyncio.Task[None] | None = field(default=None, repr=False)
    _killing: set[asyncio.Future[None]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.deaths = DeathLog(self.keeping.policy)

    @property
    def name(self) -> str:
        return self.kind.name

    def status(self) -> RunnerStatus:
        r = self.runner
        return RunnerStatus(
            self.name, self.state, self.reason, self.restarts,
            self.endpoint(r), r.pid, r.key_file, self.spare_ready,
        )  # fmt: skip

    def set(self, state: RunnerState, reason: str = "") -> None:
        self.state, self.reason = state, reason
        self.emit(self)

    def start_watching(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.watch(), name=f"supervise {self.name}")
        self.keep_spare()

    def keep_spare(self, retire: Runner | None = None) -> None:
        """Keeps the standby warm; `retire`, the runner it replaces, is killed first (off
        the event loop: TorchServe's kill waits for its processes to go)."""
        if self.spare is not None and self.spare_task is None:
            self.spare_task = asyncio.create_task(self._spare(retire), name=f"standby {self.name}")

    def cancel_spare(self) -> None:
        if self.spare_task is not None:
            self.spare_task.cancel()
            self.spare_task = None
        self.spare_ready = False

    async def watch(self) -> None:
        misses = 0
        probing = self.keeping.probing
        while self.state is RunnerState.READY:
            runner = self.runner
            if await runner.wait_exit(probing.interval_s):
                if runner is not self.runner:
                    continue  # replaced by a fresh one (blue/green): its exit is no death
                reason = self.kill_reason or runner.exit_reason()
            elif await runner.probe(probing.timeout_s):
                misses = 0
                continue
            else:
                misses += 1
                if misses < probing.failures:
                    continue
                reason = f"no answer to {misses} health probes (hung)"
            misses = 0  # a hung runner is killed by take_over's retire, or by revive
            if not self.take_over(reason):
                await self.revive(reason)

    def take_over(self, reason: str) -> bool:
        """The warm standby, if ready, replaces the dead runner at once; the dead one
        restarts in the background as the next standby."""
        spare = self.spare
        if spare is None or not self.spare_ready or not spare.alive():
            return False
        dead = self.runner
        deaths = self.deaths.record(self.keeping.clock())
        log.error(
            "runner %s (pid %s) died: %s; %d death(s) in %.0f s; standby (pid %s) takes over\n%s",
            self.name, dead.pid, reason, deaths, self.keeping.policy.crash_loop_window_s,
            spare.pid, dead.log_tail(15),
        )  # fmt: skip
        self.cancel_spare()
        self.runner, self.spare = spare, dead
        self.kill_reason = ""
        self.restarts += 1
        self.set(RunnerState.READY)  # serving from the standby now; the dead one goes next
        if self.deaths.crash_loop:
            log.error("runner %s is crash-looping: its standby is not restarted", self.name)
            self.spare = None
            self._kill_later(dead)
        else:
            self.keep_spare(retire=dead)
        return True

    def _kill_later(self, runner: Runner) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(runner.kill))
        self._killing.add(task)
        task.add_done_callback(self._killing.discard)

    async def _spare(self, retire: Runner | None = None) -> None:
        """Starts the standby and keeps it alive (and warm) until it is needed."""
        spare, keeping = self.spare, self.keeping
        assert spare is not None
        if retire is not None:
            await asyncio.to_thread(retire.kill)
        deaths = DeathLog(keeping.policy)
        while True:
            await asyncio.sleep(keeping.policy.delay(len(deaths.times), keeping.rng))
            spare.spawn()
            try:
                await spare.wait_ready(self.kind.start_timeout_s, keeping.host)
            except RunnerFailed as exc:
                reason = str(exc).splitlines()[0]
            else:
                self.spare_ready = True
                log.info("runner %s: standby ready (pid %s)", self.name, spare.pid)
                self.emit(self)
                await spare.wait_exit(float("inf"))
                self.spare_ready = False
                self.emit(self)
                reason = spare.exit_reason()
            spare.kill()
            deaths.record(keeping.clock())
            if deaths.crash_loop:
                log.error("runner %s: standby crash-looping (%s); none kept", self.name, reason)
                return
            log.warning("runner %s: standby died (%s); restarting it", self.name, reason)

    async def revive(self, reason: str) -> None:
        """Restarts a dead runner until it is ready again or crash-loops."""
        runner, policy = self.runner, self.keeping.policy
        fresh_ports = False
        while True:
            self.kill_reason = ""
            deaths = self.deaths.record(self.keeping.clock())
            log.error(
                "runner %s (pid %s) died: %s; %d death(s) in %.0f s\n%s",
                self.name, runner.pid, reason, deaths, policy.crash_loop_window_s,
                runner.log_tail(15),
            )  # fmt: skip
            # Whatever is left of it (a guard's children, a hung or stopped process), off the
            # event loop: TorchServe's kill waits for its processes to go.
            await asyncio.to_thread(runner.kill)
            if self.deaths.crash_loop:
                why = (
                    f"crash loop: {deaths} deaths in {policy.crash_loop_window_s:.0f} s; "
                    f"last: {reason}"
                )
                log.error("runner %s marked FAILED (%s); not restarting it", self.name, why)
                self.set(RunnerState.FAILED, why)
                return
            self.set(RunnerState.RESTARTING, reason)
            await asyncio.sleep(policy.delay(deaths, self.keeping.rng))
            self.restarts += 1
            runner.spawn(fresh_ports=fresh_ports)
            try:
                await runner.wait_ready(self.kind.start_timeout_s, self.keeping.host)
            except RunnerFailed as exc:
                reason = f"restart failed: {str(exc).splitlines()[0]}"
                fresh_ports = True  # its old port may be taken: the next start picks anew
                continue
            log.warning(
                "runner %s restarted (restart %d, pid %s, ready in %.1f s)",
                self.name, self.restarts, runner.pid, runner.ready_after_s,
            )  # fmt: skip
            self.set(RunnerState.READY)
            return

    def stop(self) -> None:
        """Stops the runner and its standby (SIGTERM: they drain; SIGKILL after a grace)."""
        self.runner.stop()
        if self.spare is not None:
            self.spare.stop()
        self.state = RunnerState.STOPPED

"""Supervisor: starts the runners a repository needs, keeps them alive, stops them all.

Each runner kind is one child process (or, for TorchServe, a guard with its launcher,
frontend and workers) serving every model that has a variant for it. Once started, a
watcher per runner waits on its exit (a pidfd: no polling) and probes its health every
`probe_interval_s`. A runner that exits, or fails `probe_failures` probes in a row (a
SIGSTOPped or wedged process), or that the gateway's watchdog reports stuck, is killed,
logged with the reason and its log's tail, and restarted after an exponential backoff
with jitter; one that dies `crash_loop_deaths` times within the window is marked FAILED
and left down. A restarted runner binds the port its predecessor had (and the same framed
socket path), so the gateway reaches it without a restart of its own; when it cannot, the
new endpoint travels in the status the supervisor hands the dataplane.

A kind named in `standby` also keeps a second, warm instance (its own files and ports)
that serves nothing until the first one dies: then it takes over at once (the dataplane
is handed its endpoint) and the dead one restarts in the background as the new standby.
A restart cannot be quicker than the framework's cold start (TensorFlow's import alone
takes 3-6 s on 2 cores); a standby can, for the price of its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import Repository
from gateway.dataplane import DataPlane
from gateway.health import RunnerState, RunnerStatus
from gateway.kinds import KINDS, RunnerKind
from gateway.protocol.framed import endpoint as framed_endpoint
from gateway.supervisor.launchers import launch
from gateway.supervisor.process import Runner, RunnerFailed
from gateway.supervisor.restarts import DeathLog, RestartPolicy

__all__ = ["Probing", "RunnerFailed", "Supervisor", "needed_runners"]

log = logging.getLogger("servegate.supervisor")

Listener = Callable[[RunnerStatus], None]
Launch = Callable[..., Runner]
"""(kind, repository, workdir, host, name=...) -> a runner not yet spawned (launchers.launch)."""


@dataclass(frozen=True, slots=True)
class Probing:
    """How often a live runner's health is read, and how many misses mean it is hung."""

    interval_s: float = 1.0
    timeout_s: float = 2.0
    failures: int = 3


def needed_runners(repository: Repository, kinds: Mapping[str, RunnerKind] = KINDS) -> list[str]:
    """Runner kinds with a variant that has no external endpoint, in a stable order."""
    return sorted(
        {
            v.runner
            for m in repository.values()
            for v in m.variants.values()
            if v.endpoint is None and kinds[v.runner].launch is not None
        }
    )


@dataclass(slots=True)
class _Slot:
    """One runner and what its watcher knows."""

    kind: RunnerKind
    runner: Runner
    deaths: DeathLog
    state: RunnerState = RunnerState.STARTING
    reason: str = ""
    restarts: int = 0
    kill_reason: str = ""  # why the supervisor killed it, for the death that follows
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    spare: Runner | None = None  # the warm standby, for a kind that keeps one
    spare_ready: bool = False
    spare_task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    """The local runner processes of one repository."""

    def __init__(
        self,
        repository: Repository,
        workdir: Path,
        host: str = "127.0.0.1",
        *,
        kinds: Mapping[str, RunnerKind] = KINDS,
        policy: RestartPolicy | None = None,
        probing: Probing | None = None,
        framed: bool = True,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        launcher: Launch = launch,
        standby: Collection[str] = (),
    ) -> None:
        self.repository = repository
        self.workdir = workdir
        self.host = host
        self.kinds = kinds
        self.policy = policy or RestartPolicy()
        self.probing = probing or Probing()
        self.framed = framed
        self._clock = clock
        self._rng = rng or random.Random()
        self._launch = launcher
        self.standby = set(standby)
        self._slots: dict[str, _Slot] = {}
        self._listeners: list[Listener] = []

    @property
    def runners(self) -> dict[str, Runner]:
        return {kind: slot.runner for kind, slot in self._slots.items()}

    async def start(self, kinds: Iterable[str]) -> dict[str, str]:
        """Starts every kind at once and waits for all; returns kind -> gRPC host:port."""
        kinds = list(kinds)
        unknown = [k for k in kinds if k not in self.kinds or self.kinds[k].launch is None]
        if unknown:
            local = sorted(k for k, v in self.kinds.items() if v.launch)
            raise RunnerFailed(f"no local runner for {unknown}; known: {local}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in kinds:
            kind = self.kinds[name]
            runner = self._launch(kind, self.repository, self.workdir, self.host)
            self._slots[name] = _Slot(kind, runner, DeathLog(self.policy))
            runner.spawn()
        try:
            endpoints = await asyncio.gather(
                *(self._slots[k].runner.wait_ready(self.kinds[k].start_timeout_s, self.host)
                  for k in kinds)
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        for name in kinds:
            slot = self._slots[name]
            slot.state = RunnerState.READY
            if name in self.standby:
                slot.spare = self._launch(
                    slot.kind, self.repository, self.workdir, self.host, name=f"{name}-standby"
                )
        return dict(zip(kinds, endpoints, strict=True))

    def gateway_endpoint(self, kind: str, *, framed: bool | None = None) -> str:
        """Where the gateway should forward for `kind`: the framed socket of a runner that
        serves one (when framed hops are on), else its gRPC host:port."""
        runner = self._slots[kind].runner
        if (self.framed if framed is None else framed) and runner.socket_path is not None:
            return framed_endpoint(str(runner.socket_path))
        return runner.endpoint

    def gateway_endpoints(self, *, framed: bool | None = None) -> dict[str, str]:
        return {kind: self.gateway_endpoint(kind, framed=framed) for kind in self._slots}

    def status(self, kind: str) -> RunnerStatus:
        slot = self._slots[kind]
        return RunnerStatus(
            kind, slot.state, slot.reason, slot.restarts,
            self.gateway_endpoint(kind), slot.runner.pid, slot.runner.key_file,
            slot.spare_ready,
        )  # fmt: skip

    def watch(self, listener: Listener | None = None) -> None:
        """Starts keeping every runner alive; `listener` hears each change of state."""
        if listener is not None:
            self._listeners.append(listener)
        for kind, slot in self._slots.items():
            if slot.task is None:
                slot.task = asyncio.create_task(self._watch(slot), name=f"supervise {kind}")
            if slot.spare is not None and slot.spare_task is None:
                slot.spare_task = asyncio.create_task(
                    self._keep_spare(slot), name=f"standby {kind}"
                )

    def serve(self, dataplane: DataPlane) -> None:
        """Keeps the runners alive for `dataplane`: it hears every runner's state (and its
        endpoint, should a runner move), and its watchdog tells us which runner hangs."""
        dataplane.on_stuck = self.restart
        for kind in self._slots:
            dataplane.runner_status(self.status(kind))
        self.watch(dataplane.runner_status)

    def restart(self, kind: str, reason: str) -> None:
        """Kills a runner that is alive but useless (hung); its watcher restarts it."""
        slot = self._slots.get(kind)
        if slot is None or slot.state is not RunnerState.READY:
            return
        log.error("runner %s: %s; killing it to restart", kind, reason)
        slot.kill_reason = reason
        slot.runner.kill()

    def _emit(self, slot: _Slot, state: RunnerState, reason: str = "") -> None:
        slot.state, slot.reason = state, reason
        status = self.status(slot.kind.name)
        for listener in self._listeners:
            try:
                listener(status)
            except Exception:
                log.exception("runner status listener failed")

    async def _watch(self, slot: _Slot) -> None:
        misses = 0
        while slot.state is RunnerState.READY:
            runner = slot.runner
            if await runner.wait_exit(self.probing.interval_s):
                reason = slot.kill_reason or runner.exit_reason()
            elif await runner.probe(self.probing.timeout_s):
                misses = 0
                continue
            else:
                misses += 1
                if misses < self.probing.failures:
                    continue
                reason = f"no answer to {misses} health probes (hung)"
                runner.kill()
            misses = 0
            if not self._take_over(slot, reason):
                await self._revive(slot, reason)

    def _take_over(self, slot: _Slot, reason: str) -> bool:
        """The warm standby, if ready, replaces the dead runner at once; the dead one
        restarts in the background as the next standby."""
        spare = slot.spare
        if spare is None or not slot.spare_ready or not spare.alive():
            return False
        dead, name = slot.runner, slot.kind.name
        deaths = slot.deaths.record(self._clock())
        log.error(
            "runner %s (pid %s) died: %s; %d death(s) in %.0f s; standby (pid %s) takes over\n%s",
            name, dead.pid, reason, deaths, self.policy.crash_loop_window_s, spare.pid,
            dead.log_tail(15),
        )  # fmt: skip
        dead.kill()
        if slot.spare_task is not None:
            slot.spare_task.cancel()
        slot.runner, slot.spare, slot.spare_ready = spare, dead, False
        slot.kill_reason = ""
        slot.restarts += 1
        self._emit(slot, RunnerState.READY)
        if slot.deaths.crash_loop:
            log.error("runner %s is crash-looping: its standby is not restarted", name)
            slot.spare = None
        else:
            slot.spare_task = asyncio.create_task(self._keep_spare(slot), name=f"standby {name}")
        return True

    async def _keep_spare(self, slot: _Slot) -> None:
        """Starts the standby and keeps it alive (and warm) until it is needed."""
        spare, name = slot.spare, slot.kind.name
        assert spare is not None
        deaths = DeathLog(self.policy)
        while True:
            await asyncio.sleep(self.policy.delay(len(deaths.times), self._rng))
            spare.spawn()
            try:
                await spare.wait_ready(slot.kind.start_timeout_s, self.host)
            except RunnerFailed as exc:
                reason = str(exc).splitlines()[0]
            else:
                slot.spare_ready = True
                log.info("runner %s: standby ready (pid %s)", name, spare.pid)
                self._emit(slot, slot.state, slot.reason)
                await spare.wait_exit(float("inf"))
                slot.spare_ready = False
                self._emit(slot, slot.state, slot.reason)
                reason = spare.exit_reason()
            spare.kill()
            deaths.record(self._clock())
            if deaths.crash_loop:
                log.error("runner %s: standby crash-looping (%s); no standby kept", name, reason)
                return
            log.warning("runner %s: standby died (%s); restarting it", name, reason)

    async def _revive(self, slot: _Slot, reason: str) -> None:
        """Restarts a dead runner until it is ready again or crash-loops."""
        runner, name = slot.runner, slot.kind.name
        fresh_ports = False
        while True:
            slot.kill_reason = ""
            deaths = slot.deaths.record(self._clock())
            log.error(
                "runner %s (pid %s) died: %s; %d death(s) in %.0f s\n%s",
                name, runner.pid, reason, deaths, self.policy.crash_loop_window_s,
                runner.log_tail(15),
            )  # fmt: skip
            runner.kill()  # whatever is left of it (a guard's children, a stopped process)
            if slot.deaths.crash_loop:
                why = (
                    f"crash loop: {deaths} deaths in {self.policy.crash_loop_window_s:.0f} s; "
                    f"last: {reason}"
                )
                log.error("runner %s marked FAILED (%s); not restarting it", name, why)
                self._emit(slot, RunnerState.FAILED, why)
                return
            self._emit(slot, RunnerState.RESTARTING, reason)
            await asyncio.sleep(self.policy.delay(deaths, self._rng))
            slot.restarts += 1
            runner.spawn(fresh_ports=fresh_ports)
            try:
                await runner.wait_ready(slot.kind.start_timeout_s, self.host)
            except RunnerFailed as exc:
                reason = f"restart failed: {str(exc).splitlines()[0]}"
                fresh_ports = True  # its old port may be taken: the next start picks anew
                continue
            log.warning(
                "runner %s restarted (restart %d, pid %s, ready in %.1f s)",
                name, slot.restarts, runner.pid, runner.ready_after_s,
            )  # fmt: skip
            self._emit(slot, RunnerState.READY)
            return

    async def aclose(self) -> None:
        """Stops watching (no restarts from here on), then stops every runner."""
        tasks = [
            t for s in self._slots.values() for t in (s.task, s.spare_task) if t is not None
        ]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for slot in self._slots.values():
            slot.task = slot.spare_task = None
        await asyncio.gather(*(asyncio.to_thread(self._stop, s) for s in self._slots.values()))

    @staticmethod
    def _stop(slot: _Slot) -> None:
        slot.runner.stop()
        if slot.spare is not None:
            slot.spare.stop()
        slot.state = RunnerState.STOPPED

    def stop(self) -> None:
        """Stops every runner (SIGTERM: they drain; SIGKILL after a grace)."""
        for slot in self._slots.values():
            self._stop(slot)

"""Supervisor: starts the runners a repository needs, keeps them alive, stops them all.

Each runner kind is one child process (or, for TorchServe, a guard with its launcher,
frontend and workers) serving every model that has a variant for it, kept alive by its
slot's watcher (slot.py): a runner that exits, or fails `probe_failures` probes in a row
(a SIGSTOPped or wedged process), or that the gateway's watchdog reports stuck, is killed,
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

A repository that changes (a model loaded again, a new version) is taken up blue/green:
`prepare` starts a fresh instance of each runner kind concerned beside the serving one,
`commit` makes it the one that serves and retires the old one once it has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from pathlib import Path

from gateway.config import Repository
from gateway.dataplane import DataPlane
from gateway.health import RunnerState, RunnerStatus
from gateway.kinds import KINDS, RunnerKind
from gateway.protocol.framed import endpoint as framed_endpoint
from gateway.supervisor.launchers import launch
from gateway.supervisor.process import Runner, RunnerFailed
from gateway.supervisor.restarts import RestartPolicy
from gateway.supervisor.slot import Keeping, Probing, RunnerSlot

__all__ = ["Probing", "RunnerFailed", "Supervisor", "needed_runners"]

log = logging.getLogger("servegate.supervisor")

Listener = Callable[[RunnerStatus], None]
Launch = Callable[..., Runner]
"""(kind, repository, workdir, host, name=...) -> a runner not yet spawned (launchers.launch)."""


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
        self.framed = framed
        self._keeping = Keeping(
            self.policy, probing or Probing(), clock, rng or random.Random(), host
        )
        self._launch = launcher
        self.standby = set(standby)
        self._slots: dict[str, RunnerSlot] = {}
        self._listeners: list[Listener] = []
        self._generation = 0
        self._tasks: set[asyncio.Future[object]] = set()

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
            self._slots[name] = RunnerSlot(
                kind, runner, self._keeping, self._emit, self.endpoint_of
            )
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

    def endpoint_of(self, runner: Runner, framed: bool | None = None) -> str:
        """Where the gateway reaches `runner`: its framed socket, if it serves one and
        hops are framed, else its gRPC host:port."""
        if (self.framed if framed is None else framed) and runner.socket_path is not None:
            return framed_endpoint(str(runner.socket_path))
        return runner.endpoint

    def gateway_endpoint(self, kind: str, *, framed: bool | None = None) -> str:
        return self.endpoint_of(self._slots[kind].runner, framed)

    def gateway_endpoints(self, *, framed: bool | None = None) -> dict[str, str]:
        return {kind: self.gateway_endpoint(kind, framed=framed) for kind in self._slots}

    def status(self, kind: str) -> RunnerStatus:
        return self._slots[kind].status()

    def watch(self, listener: Listener | None = None) -> None:
        """Starts keeping every runner alive; `listener` hears each change of state."""
        if listener is not None:
            self._listeners.append(listener)
        for slot in self._slots.values():
            slot.start_watching()

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
        # Off the event loop (TorchServe's kill waits for its processes); its watcher sees
        # the exit and restarts it, or its standby takes over.
        asyncio.get_running_loop().run_in_executor(None, slot.runner.kill)

    def _emit(self, slot: RunnerSlot) -> None:
        status = slot.status()
        for listener in self._listeners:
            try:
                listener(status)
            except Exception:
                log.exception("runner status listener failed")

    @property
    def kinds_served(self) -> Collection[str]:
        """The runner kinds this supervisor runs."""
        return set(self._slots)

    def reach(self, fresh: Mapping[str, Runner]) -> dict[str, tuple[str, Path | None]]:
        """kind -> (where the gateway reaches it, its key file) for each fresh runner."""
        return {kind: (self.endpoint_of(r), r.key_file) for kind, r in fresh.items()}

    async def discard(self, fresh: Mapping[str, Runner]) -> None:
        """Stops fresh runners that will not serve after all."""
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in fresh.values()))

    async def prepare(self, kinds: Collection[str], repository: Repository) -> dict[str, Runner]:
        """Blue/green, first half: a fresh instance of each local runner kind in `kinds`,
        started beside the serving one and reading `repository` as it is on disk now (a
        new model.yaml, new versions); ready, but serving nothing yet."""
        fresh: dict[str, Runner] = {}
        for kind in kinds:
            slot = self._slots[kind]
            self._generation += 1
            name = f"{kind}-g{self._generation}"
            fresh[kind] = self._launch(slot.kind, repository, self.workdir, self.host, name=name)
            fresh[kind].spawn()
        try:
            await asyncio.gather(
                *(r.wait_ready(self._slots[k].kind.start_timeout_s, self.host)
                  for k, r in fresh.items())
            )  # fmt: skip
        except BaseException:
            await asyncio.gather(*(asyncio.to_thread(r.stop) for r in fresh.values()))
            raise
        return fresh

    def commit(
        self, fresh: Mapping[str, Runner], repository: Repository, retire_after_s: float
    ) -> None:
        """Blue/green, second half: the fresh runners serve from now on (the dataplane is
        told their endpoints); the ones they replace drain and stop after `retire_after_s`;
        standbys restart on the new repository."""
        self.repository = repository
        for kind, runner in fresh.items():
            slot = self._slots[kind]
            old, slot.runner = slot.runner, runner
            slot.set(RunnerState.READY)
            self._background(self._retire(old, retire_after_s))
            if slot.spare is not None:
                slot.cancel_spare()
                self._background(asyncio.to_thread(slot.spare.stop))
                slot.spare = self._launch(
                    slot.kind, repository, self.workdir, self.host,
                    name=f"{kind}-standby-g{self._generation}",
                )  # fmt: skip
                slot.keep_spare()

    async def _retire(self, runner: Runner, after_s: float) -> None:
        await asyncio.sleep(after_s)
        await asyncio.to_thread(runner.stop)
        log.info("runner %s (pid %s) retired", runner.name, runner.pid)

    def _background(self, work: Awaitable[object]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stops watching (no restarts from here on), then stops every runner."""
        tasks = [
            t for s in self._slots.values() for t in (s.task, s.spare_task) if t is not None
        ] + list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for slot in self._slots.values():
            slot.task = slot.spare_task = None
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in self._slots.values()))

    def stop(self) -> None:
        """Stops every runner (SIGTERM: they drain; SIGKILL after a grace)."""
        for slot in self._slots.values():
            slot.stop()

"""The supervisor's watch over runners it cannot tell from real ones: deaths, hangs,
crash loops, restarts asked for by the watchdog, and a stop that restarts nothing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import Repository
from gateway.health import RunnerState, RunnerStatus
from gateway.kinds import KINDS, RunnerKind
from gateway.supervisor import Probing, RunnerFailed, Supervisor
from gateway.supervisor.restarts import RestartPolicy


class FakeRunner:
    """A Runner in memory: it dies, hangs or fails to start when the test says so."""

    socket_path = None
    description = "fake"
    key_file = None

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.endpoint = ""
        self.ready_after_s = 0.0
        self.spawns: list[bool] = []  # fresh_ports of each spawn
        self.failing_starts = 0
        self.hung = False
        self.code: int | None = None
        self.stopped = False
        self._exited = asyncio.Event()
        self.base_port = 5000

    @property
    def pid(self) -> int | None:
        return 1000 + len(self.spawns)

    def spawn(self, *, fresh_ports: bool = False) -> None:
        self.spawns.append(fresh_ports)
        self.code = None
        self.hung = False
        self._exited.clear()

    async def wait_ready(self, timeout: float, host: str = "127.0.0.1") -> str:
        if self.failing_starts:
            self.failing_starts -= 1
            self.die(3)
            raise RunnerFailed(f"{self.name} exited with code 3\nbind failed")
        self.endpoint = f"{host}:{self.base_port + len(self.spawns)}"
        return self.endpoint

    async def wait_exit(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._exited.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def probe(self, timeout: float) -> bool:
        if self.hung:
            await asyncio.sleep(timeout)
            return False
        return self.code is None

    def alive(self) -> bool:
        return self.code is None

    def exit_reason(self) -> str:
        return f"exited with code {self.code}" if self.code is not None else "running"

    def log_tail(self, lines: int = 20) -> str:
        return "(fake log)"

    def die(self, code: int = 1) -> None:
        self.code = code
        self._exited.set()

    def kill(self) -> None:
        if self.code is None:
            self.die(-9)

    def stop(self, grace: float = 5.0) -> None:
        self.stopped = True
        self.kill()


KIND = RunnerKind("fake", "v2", "fake", "module", module="nowhere")


@dataclass
class Supervised:
    sup: Supervisor
    runner: FakeRunner
    statuses: list[RunnerStatus]

    def ready_again(self) -> bool:
        return bool(self.statuses) and self.statuses[-1].state is RunnerState.READY


@pytest.fixture
async def s(tiny_repo: Repository, tmp_path: Path) -> AsyncIterator[Supervised]:
    made: dict[str, FakeRunner] = {}

    def launcher(
        kind: RunnerKind, repo: Repository, workdir: Path, host: str, name: str = ""
    ) -> FakeRunner:
        made[name or kind.name] = FakeRunner(name or kind.name, workdir)
        return made[name or kind.name]

    sup = Supervisor(
        tiny_repo,
        tmp_path,
        kinds={**KINDS, "fake": KIND},
        policy=RestartPolicy(backoff_s=0.01, crash_loop_deaths=3, crash_loop_window_s=60),
        probing=Probing(interval_s=0.02, timeout_s=0.02, failures=2),
        rng=random.Random(0),
        launcher=launcher,
    )
    await sup.start(["fake"])
    statuses: list[RunnerStatus] = []
    sup.watch(statuses.append)
    yield Supervised(sup, made["fake"], statuses)
    await sup.aclose()


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (the fakes have no event to wait on)
            await asyncio.sleep(0.005)


async def test_a_runner_that_exits_is_restarted_and_the_dataplane_told(s: Supervised) -> None:
    s.runner.die(1)
    await until(s.ready_again)
    restarting, ready = s.statuses
    assert restarting.state is RunnerState.RESTARTING
    assert restarting.reason == "exited with code 1"
    assert (ready.restarts, ready.endpoint, ready.pid) == (1, "127.0.0.1:5002", 1002)
    assert s.runner.spawns == [False, False]  # the old port first


async def test_a_hung_runner_is_killed_and_restarted(s: Supervised) -> None:
    s.runner.hung = True  # alive, but its health never answers
    await until(s.ready_again)
    assert "no answer to 2 health probes (hung)" in s.statuses[0].reason
    assert len(s.runner.spawns) == 2


async def test_the_watchdog_can_ask_for_a_restart(s: Supervised) -> None:
    s.sup.restart("fake", "variant tiny@a: no answer to a probe request in 2 s (hung)")
    await until(s.ready_again)
    assert s.statuses[0].reason.startswith("variant tiny@a: no answer")
    s.sup.restart("nope", "ignored")  # unknown kinds are nobody's business


async def test_a_restart_that_fails_tries_again_on_fresh_ports(s: Supervised) -> None:
    s.runner.failing_starts = 1
    s.runner.die(1)
    await until(s.ready_again)
    assert s.runner.spawns == [False, False, True]
    assert s.statuses[-1].restarts == 2
    assert any("restart failed: fake exited with code 3" in x.reason for x in s.statuses)


async def test_a_crash_loop_ends_in_failed_and_no_more_restarts(s: Supervised) -> None:
    s.runner.failing_starts = 10
    s.runner.die(1)
    await until(lambda: bool(s.statuses) and s.statuses[-1].state is RunnerState.FAILED)
    assert s.statuses[-1].reason.startswith("crash loop: 3 deaths in 60 s")
    spawns = len(s.runner.spawns)
    await asyncio.sleep(0.1)
    assert len(s.runner.spawns) == spawns == 3  # the first start and two restarts
    assert s.sup.status("fake").state is RunnerState.FAILED


async def test_after_aclose_nothing_is_restarted(s: Supervised) -> None:
    await s.sup.aclose()
    assert s.runner.stopped and s.sup.status("fake").state is RunnerState.STOPPED
    s.runner.die(1)
    await asyncio.sleep(0.1)
    assert len(s.runner.spawns) == 1 and s.statuses == []


async def test_a_warm_standby_takes_over_at_once_and_the_dead_one_becomes_the_next(
    tiny_repo: Repository, tmp_path: Path
) -> None:
    made: dict[str, FakeRunner] = {}

    def launcher(
        kind: RunnerKind, repo: Repository, workdir: Path, host: str, name: str = ""
    ) -> FakeRunner:
        runner = made[name or kind.name] = FakeRunner(name or kind.name, workdir)
        runner.base_port = 6000 if name else 5000
        return runner

    sup = Supervisor(
        tiny_repo, tmp_path, kinds={**KINDS, "fake": KIND}, standby={"fake"},
        policy=RestartPolicy(backoff_s=0.01), probing=Probing(interval_s=0.02, failures=2),
        rng=random.Random(0), launcher=launcher,
    )  # fmt: skip
    await sup.start(["fake"])
    statuses: list[RunnerStatus] = []
    sup.watch(statuses.append)
    first, spare = made["fake"], made["fake-standby"]
    await until(lambda: bool(statuses) and statuses[-1].standby)  # it said so when ready
    first.die(1)
    await until(lambda: len(statuses) == 2)
    took_over = statuses[1]
    assert took_over.state is RunnerState.READY  # never RESTARTING: no gap
    assert (took_over.endpoint, took_over.restarts, took_over.standby) == (
        "127.0.0.1:6001", 1, False
    )
    assert sup.runners["fake"] is spare
    await until(lambda: statuses[-1].standby)  # the dead one restarted, as the standby
    assert len(first.spawns) == 2
    spare.die(1)  # and takes over in its turn
    await until(lambda: statuses[-1].endpoint == "127.0.0.1:5002")
    assert sup.runners["fake"] is first
    await sup.aclose()
    assert first.stopped and spare.stopped

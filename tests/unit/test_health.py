"""The watchdog: a probe only when a call goes unanswered or gives up; stuck only when the
probe hangs too, so a slow but working runner is never taken for a hung one."""

from __future__ import annotations

import asyncio

from gateway.errors import DeadlineExceeded, Unavailable
from gateway.health import Progress, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Probe:
    """A variant's probe: hangs past its deadline, answers, or finds the runner down."""

    def __init__(self, clock: Clock, outcome: str) -> None:
        self.clock, self.outcome = clock, outcome
        self.calls: list[float] = []

    async def __call__(self, deadline: float) -> object:
        self.calls.append(deadline - self.clock.now)
        if self.outcome == "hang":
            raise DeadlineExceeded("no answer")
        if self.outcome == "down":
            raise Unavailable("connection refused")
        return "answer"


def make(outcome: str) -> tuple[Watchdog, Progress, Probe, list[tuple[str, str]], Clock]:
    clock = Clock()
    stuck: list[tuple[str, str]] = []
    dog = Watchdog(hang_timeout_s=5.0, on_stuck=lambda v, r: stuck.append((v, r)), clock=clock)
    progress = Progress()
    probe = Probe(clock, outcome)
    dog.watch("m@a", probe, progress)
    return dog, progress, probe, stuck, clock


async def settle(dog: Watchdog) -> None:
    dog.check()
    for _ in range(5):
        await asyncio.sleep(0)


async def test_calls_answered_in_time_are_never_probed() -> None:
    dog, progress, probe, stuck, clock = make("hang")
    for _ in range(10):
        call = progress.begin(clock.now)
        clock.now += 1.0
        progress.end(call, answered=True)
    await settle(dog)
    assert probe.calls == [] and stuck == []


async def test_a_call_older_than_the_hang_timeout_gets_a_probe_and_a_hung_probe_is_stuck() -> None:
    dog, progress, probe, stuck, clock = make("hang")
    progress.begin(clock.now)
    clock.now += 4.0
    await settle(dog)
    assert probe.calls == []  # 4 s: still in time
    clock.now += 2.0
    await settle(dog)
    assert probe.calls == [5.0]  # the probe gets the hang timeout as its deadline
    assert stuck == [("m@a", "no answer to a probe request in 5 s (hung)")]


async def test_a_call_that_gave_up_gets_a_probe_but_an_answer_clears_it() -> None:
    dog, progress, probe, stuck, clock = make("answer")
    progress.end(progress.begin(clock.now), answered=False)  # ended at its deadline
    await settle(dog)
    assert len(probe.calls) == 1 and stuck == []  # slow, not hung
    await settle(dog)
    assert len(probe.calls) == 1  # nothing new gave up: no second probe


async def test_a_runner_that_is_down_is_not_hung() -> None:
    dog, progress, probe, stuck, clock = make("down")
    progress.end(progress.begin(clock.now), answered=False)
    await settle(dog)
    assert len(probe.calls) == 1 and stuck == []  # the supervisor's business, not ours

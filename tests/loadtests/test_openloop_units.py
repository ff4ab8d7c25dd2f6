"""The open-loop and recovery benchmarks' pure parts, and the engine over in-process senders.

Arrival schedules, outcome kinds, summaries whose counts add up, the engine's in-flight
bound and its UNANSWERED guard, the verdicts and tables, the probes. Senders here are
plain coroutines (layer tests of the engine); the real senders meet a real gateway in
test_openloop_live.py. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from loadtests import arrivals, loadgen, openloop_report, probes, recovery_report, wire
from loadtests.arrivals import Outcome, Run

# schedules


def test_uniform_schedule_has_rate_times_duration_starts_evenly_spaced() -> None:
    times = arrivals.schedule(200.0, 1.5)
    assert len(times) == 300 and times[0] == 0.0
    assert np.allclose(np.diff(times), 1 / 200.0)
    assert times[-1] < 1.5


def test_poisson_schedule_is_seeded_increasing_and_near_the_rate() -> None:
    a = arrivals.schedule(1000.0, 2.0, poisson=True, rng=random.Random(7))
    b = arrivals.schedule(1000.0, 2.0, poisson=True, rng=random.Random(7))
    assert np.array_equal(a, b)
    assert np.all(np.diff(a) > 0) and a[0] > 0 and a[-1] < 2.0
    assert 1700 < len(a) < 2300  # 2000 expected, sd ~45


@pytest.mark.parametrize("rate,duration", [(0, 1), (10, 0), (-1, 1)])
def test_schedule_refuses_a_rate_or_duration_that_is_not_positive(
    rate: float, duration: float
) -> None:
    with pytest.raises(ValueError, match="positive"):
        arrivals.schedule(rate, duration)


@pytest.mark.parametrize(
    "code,kind",
    [
        ("OK", "ok"), ("200", "ok"), ("RESOURCE_EXHAUSTED", "refused"), ("429", "refused"),
        ("DEADLINE_EXCEEDED", "deadline"), ("504", "deadline"), ("CLIENT_TIMEOUT", "deadline"),
        ("UNAVAILABLE", "error"), ("503", "error"), ("CANCELLED", "error"),
        ("WRONG_ANSWER", "error"), ("client error:ValueError", "error"),
        ("transport:ClientConnectorError", "transport"), ("UNANSWERED", "unanswered"),
    ],
)  # fmt: skip
def test_every_code_has_one_kind(code: str, kind: str) -> None:
    assert arrivals.kind_of(code) == kind


# summaries


def outcome(i: int, code: str, latency: float = 0.01, lag: float = 0.0) -> Outcome:
    at = i * 0.01
    return Outcome(i, at, at + lag, at + lag + latency, code)


def test_summary_counts_add_up_and_latency_is_of_ok_requests_only() -> None:
    outs = [outcome(i, "OK", latency=0.001 * (i + 1)) for i in range(90)]
    outs += [outcome(90 + i, "RESOURCE_EXHAUSTED", latency=0.0001) for i in range(6)]
    outs += [outcome(96, "UNAVAILABLE"), outcome(97, "UNANSWERED", latency=3.0)]
    outs += [outcome(98, "DEADLINE_EXCEEDED", latency=2.0), outcome(99, "transport:X")]
    s = arrivals.summarize(Run(outs, window_s=1.0, not_sent=5, offered_rate=105.0))
    assert s["scheduled"] == 105 and s["sent"] == 100 and s["not_sent"] == 5
    assert sum(s["kinds"].values()) == s["sent"]
    assert s["kinds"] == {
        "ok": 90, "refused": 6, "error": 1, "deadline": 1, "transport": 1, "unanswered": 1,
    }  # fmt: skip
    assert s["answered"] == 97 and s["unanswered"] == 1
    assert s["ok"] == 90 and s["admitted_per_s"] == 90.0
    assert s["refused_share"] == pytest.approx(0.06)
    assert set(s["other_shares"]) == {
        "UNAVAILABLE", "UNANSWERED", "DEADLINE_EXCEEDED", "transport:X",
    }  # fmt: skip
    assert s["other_shares"]["UNAVAILABLE"] == pytest.approx(0.01)
    ok_ms = np.arange(1, 91, dtype=np.float64)
    assert s["latency_ms"]["p50"] == pytest.approx(float(np.percentile(ok_ms, 50)))
    assert s["latency_ms"]["p99"] == pytest.approx(float(np.percentile(ok_ms, 99)))
    assert s["latency_ms"]["max"] == pytest.approx(90.0)
    assert set(s["latency_by_code_ms"]) == set(s["codes"])
    assert s["latency_by_code_ms"]["RESOURCE_EXHAUSTED"]["p99"] == pytest.approx(0.1)
    json.dumps(s)  # JSON-ready as it is


def test_late_sends_show_as_start_lag_and_a_lower_sent_rate() -> None:
    outs = [outcome(i, "OK", lag=0.5) for i in range(100)]  # due over 1 s, sent 0.5 s late
    s = arrivals.summarize(Run(outs, window_s=1.0, offered_rate=100.0))
    assert s["start_lag_ms"]["p50"] == pytest.approx(500.0)
    assert s["sent_per_s"] < 100.0
    assert s["latency_from_schedule_ms"]["p50"] > s["latency_ms"]["p50"]


def test_an_empty_run_has_no_latency_but_a_valid_summary() -> None:
    s = arrivals.summarize(Run([], window_s=1.0, not_sent=0, offered_rate=10.0))
    assert s["sent"] == 0 and s["refused_share"] == 0.0 and s["latency_ms"]["p99"] is None
    json.dumps(s)


# the engine, over senders that are plain coroutines


async def test_open_loop_sends_every_request_once_in_schedule_order() -> None:
    seen: list[int] = []

    async def send(i: int, timeout: float) -> str:
        seen.append(i)
        await asyncio.sleep(0.001)
        return "OK"

    run = await loadgen.open_loop(send, arrivals.schedule(500.0, 0.1), deadline_s=1.0)
    assert seen == list(range(50))
    assert sorted(o.index for o in run.outcomes) == list(range(50))
    assert all(o.kind == "ok" and o.sent_s >= o.scheduled_s for o in run.outcomes)
    assert run.not_sent == 0


async def test_requests_due_while_the_bound_is_reached_are_counted_not_sent() -> None:
    async def hang(i: int, timeout: float) -> str:
        await asyncio.Event().wait()
        return "OK"

    due_at_once = np.zeros(10)
    run = await loadgen.open_loop(hang, due_at_once, deadline_s=0.01, grace_s=0.01, max_inflight=3)
    s = arrivals.summarize(run)
    assert (s["sent"], s["not_sent"], s["scheduled"]) == (3, 7, 10)
    assert s["unanswered"] == 3  # nothing ended them by deadline + grace


async def test_a_sender_that_turns_cancellation_into_a_code_is_still_unanswered() -> None:
    async def swallows(i: int, timeout: float) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "CANCELLED"  # as grpc.aio answers a call cancelled under it
        return "OK"

    run = await loadgen.open_loop(swallows, np.zeros(2), deadline_s=0.01, grace_s=0.01)
    assert [o.code for o in run.outcomes] == ["UNANSWERED", "UNANSWERED"]


async def test_an_answer_that_waited_behind_a_stalled_loop_is_not_unanswered() -> None:
    """A generator starved of CPU reads answers late; they still count as answers."""
    loop = asyncio.get_running_loop()

    async def answered_in_time(i: int, timeout: float) -> str:
        answer: asyncio.Future[str] = loop.create_future()
        loop.call_later(0.01, answer.set_result, "OK")  # well before deadline + grace
        loop.call_later(0.002, time.sleep, 0.2)  # then the loop stalls past both
        return await answer

    run = await loadgen.open_loop(answered_in_time, np.zeros(1), deadline_s=0.02, grace_s=0.01)
    assert [o.code for o in run.outcomes] == ["OK"]


async def test_sender_exceptions_are_outcomes_so_the_counts_still_add_up() -> None:
    async def fails(i: int, timeout: float) -> str:
        if i == 0:
            raise ConnectionResetError("reset")
        if i == 1:
            raise ValueError("a bug")
        return "OK"

    run = await loadgen.open_loop(fails, np.zeros(3), deadline_s=1.0)
    codes = sorted(o.code for o in run.outcomes)
    assert codes == ["OK", "client error:ValueError", "transport:ConnectionResetError"]


async def test_stop_ends_the_schedule_early_and_cuts_the_window() -> None:
    stop = asyncio.Event()

    async def send(i: int, timeout: float) -> str:
        return "OK"

    run = await loadgen.open_loop(
        send, arrivals.schedule(100.0, 30.0), deadline_s=1.0, stop=stop,
        on_outcome=lambda o: stop.set(), window_s=30.0,
    )  # fmt: skip
    assert 0 < len(run.outcomes) < 3000 and run.window_s < 30.0


async def test_closed_loop_keeps_concurrency_workers_busy_for_the_duration() -> None:
    open_now, most = 0, 0

    async def send(i: int, timeout: float) -> str:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        await asyncio.sleep(0.002)
        open_now -= 1
        return "OK"

    run = await loadgen.closed_loop(send, 4, 0.05, deadline_s=1.0)
    assert most == 4 and len(run.outcomes) >= 4 and run.window_s == 0.05
    assert len({o.index for o in run.outcomes}) == len(run.outcomes)


# the report


def step(mult: float, admitted: float, p99: float | None, rss: float, **kw: Any) -> dict:
    doc: dict[str, Any] = {
        "multiplier": mult, "offered_rate": 100 * mult, "sent_per_s": 100 * mult,
        "admitted_per_s": admitted, "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": p99, "max": 9},
        "refused_share": 0.0, "other_shares": {}, "unanswered": 0, "not_sent": 0,
        "start_lag_ms": {"p50": 0.1, "p90": 0.2, "p99": 1.0, "max": 2.0},
        "resources": {"gateway": {"rss_mb_max": rss}, "loadgen": {"cpu_pct": 40.0}},
    }  # fmt: skip
    doc.update(kw)
    return doc


def test_goals_judge_the_top_rate_against_capacity_and_the_lowest_rate() -> None:
    steps = [step(1, 100, 4.0, 100.0), step(4, 95, 12.0, 120.0)]
    g = openloop_report.goals(100.0, steps)
    assert g["throughput"]["met"] and g["throughput"]["value"] == pytest.approx(0.95)
    assert g["p99"]["met"] and g["p99"]["value"] == pytest.approx(3.0)
    assert g["rss"]["met"] and g["all_ended"]["met"] and g["generator_kept_up"]["met"]

    lagging = {"p50": 100.0, "p90": 200.0, "p99": 900.0, "max": 1000.0}
    steps = [step(1, 100, 4.0, 100.0), step(4, 20, 40.0, 400.0, unanswered=3,
                                               start_lag_ms=lagging)]  # fmt: skip
    g = openloop_report.goals(100.0, steps)
    assert not any(v["met"] for v in g.values())
    assert "4x" in g["generator_kept_up"]["text"]


def test_a_generator_that_cannot_keep_up_alone_fails_its_goal() -> None:
    steps = [step(1, 100, 4.0, 100.0), step(4, 95, 12.0, 120.0)]
    alone = step(4, 0, None, 100.0, unanswered=10)
    g = openloop_report.goals(100.0, steps, alone)
    assert not g["generator_kept_up"]["met"]
    assert "beyond this generator" in g["generator_kept_up"]["text"]
    kept_up = openloop_report.goals(100.0, steps, step(4, 0, None, 100.0))
    assert kept_up["generator_kept_up"]["met"]


def test_the_table_has_a_row_per_rate_with_its_other_codes() -> None:
    doc = {
        "target": "digits@onnx", "settings": {"protocol": "grpc"}, "capacity": {"rate": 100.0},
        "steps": [step(1, 100, 4.0, 100.0),
                  step(2, 90, 8.0, 110.0, other_shares={"UNAVAILABLE": 0.25})],
    }  # fmt: skip
    doc["baseline"] = step(2, 0, None, 100.0, other_shares={"CANCELLED": 0.5})
    out = io.StringIO()
    Console(file=out, width=250).print(openloop_report.table(doc))
    text = out.getvalue()
    assert "1x" in text and "2x" in text and "UNAVAILABLE 25.0%" in text
    assert "2x alone" in text and "CANCELLED 50.0%" in text


def test_recovery_figures_split_every_request_around_kill_and_recovery() -> None:
    def at(i: int, sent: float, done: float, code: str) -> Outcome:
        return Outcome(i, sent, sent, done, code)

    outs = [
        at(0, 0.0, 0.1, "OK"), at(1, 0.5, 0.6, "OK"),  # before the kill at 1.0
        at(2, 0.95, 1.05, "UNAVAILABLE"), at(3, 1.2, 1.3, "UNAVAILABLE"),
        at(4, 1.4, 2.4, "DEADLINE_EXCEEDED"),
        at(5, 0.9, 1.6, "OK"),  # sent before the kill: no proof of recovery
        at(6, 2.0, 2.1, "OK"),  # the recovery: 1.1 s after the kill
        at(7, 2.2, 2.3, "UNAVAILABLE"), at(8, 2.5, 2.6, "OK"),
    ]  # fmt: skip
    f = recovery_report.figures(outs, kill_s=1.0, within_s=5.0)
    assert f["recovered"] and f["recovered_after_s"] == pytest.approx(1.1)
    assert f["failed_meanwhile_by_code"] == {"UNAVAILABLE": 2}
    assert f["failed_after_by_code"] == {"DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 1}
    parts = ("ok_before", "failed_before", "failed_meanwhile", "failed_after", "ok_after")
    assert sum(f[k] for k in parts) == f["sent"] == len(outs)
    assert recovery_report.verdict(f) == "1.10 s"

    down = recovery_report.figures(outs[:5], kill_s=1.0, within_s=3.0)
    assert not down["recovered"] and down["failed_meanwhile"] == 3
    assert recovery_report.verdict(down) == "not recovered within 3 s"


# probes


def test_restart_count_reads_the_runner_label_and_absent_is_zero() -> None:
    text = (
        "# HELP servegate_runner_restarts_total Runner restarts.\n"
        "# TYPE servegate_runner_restarts_total counter\n"
        'servegate_runner_restarts_total{runner="onnx"} 2.0\n'
        'servegate_runner_restarts_total{runner="jax"} 1.0\n'
    )
    assert probes.restart_count(text, "onnx") == 2.0
    assert probes.restart_count(text, "torchserve") == 0.0
    assert probes.restart_count("", "onnx") == 0.0


def test_the_listener_of_a_port_is_found() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert probes.listener_pid(s.getsockname()[1]) == os.getpid()


def test_torchserve_is_killed_at_its_java_frontend_unless_asked_for_the_launcher(
    tmp_path: Path,
) -> None:
    """A guard (the recorded pid) above a launcher (`ts.model_server`) and a frontend
    (a process named java), as `servegate up` starts TorchServe."""
    java = tmp_path / "java"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", java)
    launcher = f"{sys.executable} -c 'import time; time.sleep(30)' ts.model_server"
    guard = subprocess.Popen(["/bin/sh", "-c", f"{java} 30 & {launcher} & wait"])
    try:
        for _ in range(500):  # until the shell has started both children (a few ms)
            if len(probes.psutil.Process(guard.pid).children()) == 2:
                break
            time.sleep(0.01)
        frontend = probes.kill_target("torchserve", guard.pid)
        assert frontend.name() == "java" and frontend.ppid() == guard.pid
        ts = probes.kill_target("torchserve", guard.pid, "launcher")
        assert "ts.model_server" in ts.cmdline() and ts.ppid() == guard.pid
        assert probes.kill_target("onnx", guard.pid).pid == guard.pid
    finally:
        for child in probes.psutil.Process(guard.pid).children():
            child.kill()
        guard.kill()
        guard.wait()


def test_http_bodies_carry_request_parameters() -> None:
    body = wire.http_body(
        "digits", "pixels", np.zeros((1, 64), np.float32), binary=True,
        parameters={"timeout": 2_000_000},
    )  # fmt: skip
    length = int(body.headers["Inference-Header-Content-Length"])
    header = json.loads(body.body[:length])
    assert header["parameters"] == {"timeout": 2_000_000, "binary_data_output": True}

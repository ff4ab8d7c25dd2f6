"""The open-loop and recovery benchmarks against real gateways over the real ONNX runner.

Short runs (a second or two of load): every request must end — answered, or at its
deadline — and the counts must add up. Speeds are the benchmarks' output, never
asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Repository
from loadtests import arrivals, loadgen, refuser, workload
from loadtests.senders import PROTOCOLS, make_sender
from tests.live import RunningGateway

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _adds_up(s: dict) -> None:
    assert s["scheduled"] == s["sent"] + s["not_sent"]
    assert sum(s["kinds"].values()) == s["sent"] == sum(s["codes"].values())
    assert (
        s["answered"] + s["kinds"]["deadline"] + s["kinds"]["transport"] + s["unanswered"]
        == (s["sent"])
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_open_loop_over_the_onnx_runner_ends_every_request(
    protocol: str, onnx_gateway: RunningGateway, repository: Repository
) -> None:
    work = workload.build("digits", 1, repository=repository)
    send = make_sender(
        protocol, http_url=onnx_gateway.http_url, grpc_address=onnx_gateway.grpc_address,
        model_ref="digits@onnx", workload=work, deadline_s=2.0, check_every=1,
    )  # fmt: skip
    try:
        run = await loadgen.open_loop(
            send, arrivals.schedule(100.0, 1.0), deadline_s=2.0, offered_rate=100.0,
            window_s=1.0,
        )  # fmt: skip
    finally:
        await send.close()
    s = arrivals.summarize(run)
    _adds_up(s)
    assert s["scheduled"] == 100 and s["not_sent"] == 0
    assert s["unanswered"] == 0
    assert s["ok"] > 0, s["codes"]  # every answer checked (shape and class)
    assert "WRONG_ANSWER" not in s["codes"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_refuser_refuses_every_request_at_once(
    protocol: str, repository: Repository, tmp_path: Path
) -> None:
    work = workload.build("digits", 1, repository=repository)
    with refuser.running("grpc" if protocol == "grpc" else "http", tmp_path) as address:
        send = make_sender(
            protocol, http_url=address, grpc_address=address, model_ref="digits",
            workload=work, deadline_s=2.0,
        )  # fmt: skip
        try:
            run = await loadgen.open_loop(send, arrivals.schedule(200.0, 0.5), deadline_s=2.0)
        finally:
            await send.close()
    s = arrivals.summarize(run)
    _adds_up(s)
    assert s["kinds"]["refused"] == s["sent"] == 100


def test_the_openloop_command_measures_capacity_then_each_rate(
    onnx_gateway: RunningGateway, tmp_path: Path
) -> None:
    out = tmp_path / "openloop.json"
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "bench", "openloop",
         "--url", onnx_gateway.http_url, "--grpc-address", onnx_gateway.grpc_address,
         "--capacity-concurrency", "4", "--capacity-seconds", "0.5", "--warmup", "0.2",
         "--duration", "0.5", "--multipliers", "1,2", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["capacity"]["rate"] > 0
    assert [r["concurrency"] for r in doc["capacity"]["closed_loop"]] == [4]
    assert [s["multiplier"] for s in doc["steps"]] == [1.0, 2.0]
    for s in doc["steps"]:
        _adds_up(s)
        assert s["offered_rate"] == pytest.approx(s["multiplier"] * doc["capacity"]["rate"])
        assert s["unanswered"] == 0
    # the gateway of this test runs in the test's own process: found by its port
    assert doc["system"]["gateway_pid"] == os.getpid()
    assert "gateway" in doc["steps"][0]["resources"]
    assert set(doc["goals"]) == {"throughput", "p99", "rss", "all_ended", "generator_kept_up"}
    alone = doc["baseline"]  # the top rate at a server that refuses at once
    assert alone["multiplier"] == 2.0 and alone["kinds"]["refused"] > 0
    _adds_up(alone)
    assert alone["unanswered"] == 0
    assert "admitted/s" in done.stdout


@pytest.mark.timeout(300)
def test_recovery_kills_the_onnx_runner_and_reports_without_hanging(tmp_path: Path) -> None:
    """Against its own `servegate up`: recovered or not (supervision is another change),
    the run ends, every request ended, and the kill hit the runner's process."""
    out = tmp_path / "recovery.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.recovery", "--kinds", "onnx", "--rate", "40",
         "--before", "0.5", "--within", "2", "--after", "0.2", "--no-build",
         "--workdir", str(tmp_path / "system"), "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = json.loads(out.read_text())["runners"]
    assert row["kind"] == "onnx" and row["variant"] == "onnx"
    ready = json.loads((tmp_path / "system" / "ready.json").read_text())
    assert row["killed"]["pid"] == ready["runners"]["onnx"]["pid"]
    assert row["unanswered"] == 0
    assert row["ok_before"] > 0 and row["failed_before"] == 0
    parts = ("ok_before", "failed_before", "failed_meanwhile", "failed_after", "ok_after")
    assert sum(row[k] for k in parts) == row["sent"]
    if row["recovered"]:
        assert 0 < row["recovered_after_s"] <= 2.0
    else:
        assert row["failed_meanwhile"] > 0 and row["ok_after"] == 0
        assert "not recovered within 2 s" in done.stdout
    assert row["restarts_after"] >= row["restarts_before"] >= 0

"""Runners heal, health tells the truth, a stop drains: `servegate up` as an operator runs it.

Every test starts the real thing (`servegate up` with real runners, or the same parts in
this process) and does to it what production does: SIGKILL a runner under load (each
kind, TorchServe's Java frontend included), SIGSTOP one, hang a model call, kill one until
it crash-loops, SIGTERM the gateway under load, SIGKILL the gateway. Recovery times are
printed (pytest -s shows them); they are bounded loosely, as figures for the report.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import httpx
import numpy as np
import psutil
import pytest
import uvloop

from gateway.config import Repository, Settings
from gateway.kinds import KINDS
from gateway.protocol import v2_grpc
from gateway.protocol.v2_service import V2Stub
from gateway.server import Gateway, build_dataplane
from gateway.supervisor import Probing, Supervisor
from gateway.supervisor.restarts import RestartPolicy
from gateway.tensors import InferRequest, Tensor
from tests.live import (
    CLIENT_TIMEOUT_S,
    GrpcLoad,
    ServegateUp,
    samples,
    servegate_up,
    wait_for,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.slow]

# Settings that make healing show within seconds (the defaults are for production).
FAST = {
    "SERVEGATE_PROBE_INTERVAL_S": "0.5",
    "SERVEGATE_PROBE_TIMEOUT_S": "1.5",
    "SERVEGATE_PROBE_FAILURES": "3",
    "SERVEGATE_RESTART_BACKOFF_S": "0.1",
}
VARIANT_OF = {"onnx": "onnx", "jax": "jax", "tfserving": "tensorflow", "torchserve": "pytorch"}
# Seconds from the kill to the first success, restart included. A cold restart cannot
# beat the framework's start (TensorFlow's import alone is 3-6 s on 2 cores), so up_all
# keeps a warm standby of every kind; cold restarts are covered by the crash-loop test
# and measured by `servegate bench recovery`.
RECOVERY_BOUND_S = 5.0


def runner_process(up: ServegateUp, kind: str) -> psutil.Process:
    """The live process that serves `kind` now (the admin route knows it: the pid changes
    with each restart or take-over); for TorchServe, its Java frontend."""
    runners = httpx.get(f"{up.http_url}/admin/runners", timeout=10).json()["runners"]
    (pid,) = [r["pid"] for r in runners if r["kind"] == kind]
    process = psutil.Process(pid)
    if kind == "torchserve":
        (java,) = [p for p in process.children(recursive=True) if p.name() == "java"]
        return java
    return process


def standby_ready(up: ServegateUp, kind: str) -> bool:
    runners = httpx.get(f"{up.http_url}/admin/runners", timeout=10).json()["runners"]
    return any(r["kind"] == kind and r["standby"] for r in runners)


def restarts(up: ServegateUp, kind: str) -> float:
    for line in up.metrics().splitlines():
        if line.startswith(f'servegate_runner_restarts_total{{runner="{kind}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def up_all(
    repository: Repository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServegateUp]:
    """`servegate up` with all four runners, each with a warm standby."""
    env = {**FAST, "SERVEGATE_STANDBY": "all"}
    up = servegate_up(tmp_path_factory.mktemp("up-all"), list(VARIANT_OF), env)
    yield up
    assert up.stop() == 0, up.log()[-3000:]


@pytest.mark.parametrize("kind", list(VARIANT_OF))
def test_a_runner_killed_under_load_is_restarted_and_served_again(
    up_all: ServegateUp, digits: dict[str, np.ndarray], kind: str
) -> None:
    wait_for(lambda: standby_ready(up_all, kind), 120, f"{kind}'s standby")
    target = runner_process(up_all, kind)
    before = restarts(up_all, kind)
    with GrpcLoad(up_all.grpc_address, VARIANT_OF[kind], digits["inputs"][:1]) as load:
        wait_for(lambda: len(load.oks_after(0)) >= 20, 60, "requests before the kill")
        killed = time.monotonic()
        target.send_signal(signal.SIGKILL)
        wait_for(lambda: load.oks_after(killed), 90, "a success after the kill")
        recovered = load.oks_after(killed)[0] - killed
        wait_for(lambda: len(load.oks_after(killed)) >= 10, 30, "steady successes")
    outcomes = load.check_answers()
    print(f"\n{kind}: success again {recovered:.2f} s after SIGKILL; outcomes {sorted(outcomes)}")
    assert restarts(up_all, kind) == before + 1
    assert recovered < RECOVERY_BOUND_S
    assert runner_process(up_all, kind).pid != target.pid
    assert f"runner {kind} (pid" in up_all.log() and "standby (pid" in up_all.log()


def test_a_sigstopped_runner_is_found_hung_and_restarted(
    up_all: ServegateUp, digits: dict[str, np.ndarray]
) -> None:
    """The process lives, nothing in it answers: its health probes time out."""
    wait_for(lambda: standby_ready(up_all, "onnx"), 60, "onnx's standby")
    target = runner_process(up_all, "onnx")
    before = restarts(up_all, "onnx")
    with GrpcLoad(up_all.grpc_address, "onnx", digits["inputs"][:1]) as load:
        wait_for(lambda: len(load.oks_after(0)) >= 10, 60, "requests before the stop")
        stopped = time.monotonic()
        target.send_signal(signal.SIGSTOP)
        wait_for(lambda: load.oks_after(stopped + 0.5), 60, "a success after the SIGSTOP")
        recovered = load.oks_after(stopped + 0.5)[0] - stopped
    load.check_answers()
    print(f"\nonnx SIGSTOP: success again {recovered:.2f} s later")
    assert restarts(up_all, "onnx") == before + 1
    assert "no answer to 3 health probes (hung)" in up_all.log()
    assert not psutil.pid_exists(target.pid) or target.status() == psutil.STATUS_ZOMBIE


@pytest.fixture
def hanging_stack(
    repository: Repository, tmp_path: Path
) -> Iterator[tuple[Gateway, Supervisor, asyncio.AbstractEventLoop]]:
    """Supervisor + gateway in this process, wired as `servegate up` wires them, over an
    onnx runner whose model call never returns for a NaN input."""
    hanging = replace(KINDS["onnx"], module="tests.runners_under_test.hanging_onnx")
    kinds = {**KINDS, "onnx": hanging}
    settings = Settings(
        http_port=0, grpc_port=0, repository=repository.root, hang_timeout_s=2.0,
        shutdown_grace_s=2.0,
    )  # fmt: skip
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def build() -> tuple[Gateway, Supervisor]:
        sup = Supervisor(
            repository, tmp_path, kinds=kinds,
            policy=RestartPolicy(backoff_s=0.1), probing=Probing(interval_s=0.5),
        )  # fmt: skip
        await sup.start(["onnx"])
        gw = Gateway(build_dataplane(settings, repository, sup.gateway_endpoints()), settings)
        await gw.start()
        sup.serve(gw.dataplane)
        return gw, sup

    gw, sup = asyncio.run_coroutine_threadsafe(build(), loop).result(60)
    yield gw, sup, loop

    async def close() -> None:
        await gw.stop()
        await sup.aclose()

    asyncio.run_coroutine_threadsafe(close(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_a_model_call_that_never_returns_is_found_and_its_runner_restarted(
    hanging_stack: tuple[Gateway, Supervisor, asyncio.AbstractEventLoop],
    digits: dict[str, np.ndarray],
) -> None:
    gw, sup, _ = hanging_stack
    address = f"127.0.0.1:{gw.grpc_port}"
    first_pid = sup.runners["onnx"].pid
    poison = np.full((1, 64), np.nan, np.float32)
    with GrpcLoad(address, "onnx", digits["inputs"][:1], threads=2) as load:
        wait_for(lambda: len(load.oks_after(0)) >= 10, 30, "requests before the poison")
        with grpc.insecure_channel(address) as channel:
            sent = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                V2Stub(channel).ModelInfer(  # type: ignore[arg-type]
                    v2_grpc.request_to_pb(
                        InferRequest(
                            "digits@onnx",
                            (Tensor("pixels", "FP32", poison),),
                            parameters={"timeout": 1_000_000},
                        )
                    ),
                    timeout=CLIENT_TIMEOUT_S,
                )
            answered = time.monotonic() - sent
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
        assert answered < 2.5  # at its own deadline, not a hang
        wait_for(lambda: load.oks_after(sent + 3.0), 60, "a success after the restart")
        recovered = load.oks_after(sent + 3.0)[0] - sent
    load.check_answers()
    print(f"\nhung model call: served again {recovered:.2f} s after the poisoned request")
    assert sup.runners["onnx"].pid != first_pid
    text = gw.dataplane.metrics.exposition().decode()
    assert 'servegate_variant_stuck_total{model="digits",variant="onnx"} 1.0' in text
    assert 'servegate_runner_restarts_total{runner="onnx"} 1.0' in text


def test_a_crash_loop_ends_failed_in_metadata_and_a_sigkilled_gateway_leaves_no_orphans(
    repository: Repository, tmp_path: Path, digits: dict[str, np.ndarray]
) -> None:
    env = {**FAST, "SERVEGATE_CRASH_LOOP_DEATHS": "3", "SERVEGATE_RESTART_BACKOFF_S": "0.05"}
    up = servegate_up(tmp_path, ["onnx", "torchserve"], env)
    try:
        for _ in range(3):
            victim = runner_process(up, "onnx")
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            old = victim.pid
            wait_for(
                lambda old=old: "crash loop" in up.log() or _has_new_onnx(up, old),  # type: ignore[misc]
                60,
                "the next onnx runner, or the crash loop",
            )
        meta = httpx.get(f"{up.http_url}/v2/models/digits", timeout=10).json()
        onnx = next(v for v in meta["variants"] if v["name"] == "onnx")
        assert onnx["state"] == "FAILED", onnx
        assert onnx["reason"].startswith("crash loop: 3 deaths in 60 s")
        t0 = time.monotonic()
        reply = httpx.post(
            f"{up.http_url}/v2/models/digits@onnx/infer",
            json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64],
                              "data": digits["inputs"][0].tolist()}]},
            timeout=10,
        )  # fmt: skip
        assert reply.status_code == 503 and "failed" in reply.json()["error"]
        assert time.monotonic() - t0 < 1.0  # refused at once, not after a timeout
        assert "servegate_runner_up{runner=\"onnx\"} 0.0" in up.metrics()
        # The other runner still serves.
        reply = httpx.post(
            f"{up.http_url}/v2/models/digits@pytorch/infer",
            json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64],
                              "data": digits["inputs"][0].tolist()}]},
            timeout=30,
        )  # fmt: skip
        assert reply.status_code == 200, reply.text

        family = up.descendants()
        assert any(p.name() == "java" for p in family)  # TorchServe's frontend, 3 levels down
        up.proc.send_signal(signal.SIGKILL)
        up.proc.wait(10)
        _, alive = psutil.wait_procs(family, timeout=20)
        alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"orphans left by a SIGKILLed gateway: {alive}"
    finally:
        up.stop(signal.SIGKILL)


def _has_new_onnx(up: ServegateUp, old: int) -> bool:
    runners = httpx.get(f"{up.http_url}/admin/runners", timeout=10).json()["runners"]
    (onnx,) = [r for r in runners if r["kind"] == "onnx"]
    return bool(onnx["state"] == "READY" and onnx["pid"] != old)


def test_sigterm_under_load_drains_without_failing_a_request_in_flight(
    repository: Repository, tmp_path: Path
) -> None:
    """Readiness goes NOT_SERVING first; requests keep being served for the drain delay,
    in-flight ones finish; then the process exits 0 with its runners gone."""
    up = servegate_up(tmp_path, ["onnx"], {"SERVEGATE_DRAIN_DELAY_S": "1.0"})
    resnet = samples(repository, "resnet18")["inputs"][:1]
    digits_x = samples(repository, "digits")["inputs"][:1]
    runner = runner_process(up, "onnx")
    results: list[tuple[float, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def http_load() -> None:
        body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64],
                            "data": digits_x[0].tolist()}]}  # fmt: skip
        with httpx.Client(base_url=up.http_url, timeout=CLIENT_TIMEOUT_S) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    outcome = str(http.post("/v2/models/digits/infer", json=body).status_code)
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                with lock:
                    results.append((sent, outcome))
                if outcome != "200":
                    return

    def grpc_load() -> None:
        msg = v2_grpc.request_to_pb(
            InferRequest("resnet18", (Tensor("image", "FP32", resnet),))
        )
        with grpc.insecure_channel(up.grpc_address) as channel:
            stub = V2Stub(channel)  # type: ignore[arg-type]
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    stub.ModelInfer(msg, timeout=CLIENT_TIMEOUT_S)
                    outcome = "OK"
                except grpc.RpcError as exc:
                    outcome = exc.code().name  # type: ignore[attr-defined]
                with lock:
                    results.append((sent, outcome))
                if outcome != "OK":
                    return

    threads = [threading.Thread(target=f) for f in (http_load, http_load, grpc_load, grpc_load)]
    for t in threads:
        t.start()
    wait_for(lambda: len(results) > 40, 60, "load before the SIGTERM")
    sigterm = time.monotonic()
    up.proc.send_signal(signal.SIGTERM)

    def not_ready() -> bool:
        return httpx.get(f"{up.http_url}/v2/health/ready", timeout=5).status_code == 503

    wait_for(not_ready, 5, "readiness to go NOT_SERVING")
    ready_off = time.monotonic() - sigterm
    code = up.proc.wait(60)
    stop.set()
    for t in threads:
        t.join(CLIENT_TIMEOUT_S + 5)
    assert code == 0, up.log()[-3000:]
    assert ready_off < 1.0  # NOT_SERVING at once, while requests are still being served
    served_before = [o for sent, o in results if sent < sigterm + 0.8]
    assert served_before and set(served_before) <= {"200", "OK"}, sorted(set(served_before))
    failed_late = {o for sent, o in results if sent >= sigterm + 0.8} - {"200", "OK"}
    # After the drain delay the ports close: a client is refused, never answered 5xx.
    assert failed_late <= {"ConnectError", "RemoteProtocolError", "ReadError", "UNAVAILABLE"}
    assert not psutil.pid_exists(runner.pid) or runner.status() == psutil.STATUS_ZOMBIE

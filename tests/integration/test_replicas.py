"""Two real ONNX runners behind digits@onnx: balanced, and one SIGKILLed under load loses
only the calls that were in flight on it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest

from gateway.backends.replicas import ReplicaSet
from gateway.config import Repository
from gateway.supervisor import Supervisor
from tests.live import GrpcLoad, RunningGateway, start_gateway, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def two_replicas(
    repository: Repository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Supervisor], RunningGateway]]:
    sups = [Supervisor(repository, tmp_path_factory.mktemp(f"replica{i}")) for i in (1, 2)]
    for sup in sups:
        asyncio.run(sup.start(["onnx"]))
    hops = ",".join(sup.gateway_endpoints()["onnx"] for sup in sups)
    gw = start_gateway(repository, {"onnx": hops})
    yield sups, gw
    gw.stop()
    for sup in sups:
        sup.stop()


def test_a_killed_replica_loses_only_its_calls_in_flight(
    two_replicas: tuple[list[Supervisor], RunningGateway], digits: dict[str, np.ndarray]
) -> None:
    sups, gw = two_replicas
    served = gw.gateway.dataplane.served("digits", "onnx")
    assert served is not None
    backend = served.backend
    assert isinstance(backend, ReplicaSet) and len(backend.replicas) == 2
    victim = sups[0].runners["onnx"]
    with GrpcLoad(gw.grpc_address, "onnx", digits["inputs"][:1], threads=4) as load:
        wait_for(lambda: len(load.oks_after(0)) >= 200, 60, "requests on both replicas")
        served_before = [r.backend for r in backend.replicas]
        killed = time.monotonic()
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        wait_for(lambda: len(load.oks_after(killed + 0.5)) >= 200, 60, "requests after the kill")
    load.check_answers()
    lost = [(sent, took) for sent, outcome, took in load.results if outcome != "OK"]
    assert all(sent <= killed <= sent + took for sent, took in lost), lost  # in flight only
    assert len(lost) <= len(load.threads)
    assert [r.up for r in backend.replicas] == [False, True]
    assert served_before == [r.backend for r in backend.replicas]
    print(f"\nreplica SIGKILL: {len(lost)} call(s) lost, all in flight on it")

"""`servegate up --workers 2` on a real ONNX runner: two gateway processes on one pair of
ports, agreeing on every change, restarted when killed, stopped by Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import psutil
import pytest

from gateway.protocol import v2_grpc
from gateway.protocol.v2_service import V2Stub
from gateway.tensors import InferRequest, Tensor
from tests.live import ServegateUp, servegate_up, wait_for

pytestmark = pytest.mark.integration

BODY = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [1.0] * 64}]}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServegateUp]:
    up = servegate_up(tmp_path_factory.mktemp("fleet"), ["onnx"], env={"SERVEGATE_WORKERS": "2"})
    try:
        yield up
    finally:
        up.stop()


def _fresh(url: str, method: str, path: str, **kw: object) -> httpx.Response:
    """One request on a connection of its own: the kernel picks the worker each time."""
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.request(method, path, **kw)  # type: ignore[arg-type]


def _all_served(url: str) -> bool:
    return all(
        _fresh(url, "POST", "/v2/models/digits/infer", json=BODY).status_code == 200
        for _ in range(8)
    )


def _workers(up: ServegateUp) -> list[psutil.Process]:
    """The live worker processes; a killed one is a zombie until the primary reaps it."""
    found = []
    for p in up.descendants():
        with contextlib.suppress(psutil.Error):
            if "gateway.fleet.worker" in " ".join(p.cmdline()):
                found.append(p)
    return found


def _served_requests(up: ServegateUp) -> float:
    text = _fresh(up.http_url, "GET", "/metrics").text
    found = re.findall(r'^servegate_requests_total\{[^}]*outcome="ok"[^}]*\} (\S+)$', text, re.M)
    return sum(float(v) for v in found)


def test_both_workers_serve_both_protocols_on_the_same_ports(fleet: ServegateUp) -> None:
    workers = _workers(fleet)
    assert len(workers) == 2
    assert sorted(p.pid for p in workers) == sorted(fleet.info["worker_pids"])
    port = fleet.info["http_port"]
    clients = [httpx.Client(base_url=fleet.http_url, timeout=30) for _ in range(24)]
    try:
        for c in clients:  # each keeps its connection open
            assert c.post("/v2/models/digits/infer", json=BODY).status_code == 200
        holding = {
            p.pid: sum(1 for c in p.net_connections("tcp") if c.laddr.port == port and c.raddr)
            for p in workers
        }
    finally:
        for c in clients:
            c.close()
    assert all(n > 0 for n in holding.values()), f"connections per worker: {holding}"
    assert sum(holding.values()) == 24

    msg = v2_grpc.request_to_pb(
        InferRequest("digits", (Tensor("pixels", "FP32", np.ones((1, 64), np.float32)),))
    )
    for _ in range(6):
        with grpc.insecure_channel(fleet.grpc_address) as channel:
            reply = V2Stub(channel).ModelInfer(msg, timeout=30)  # type: ignore[arg-type]
            assert reply.outputs[0].shape == [1, 10]


def test_metrics_count_every_workers_requests_on_any_scrape(fleet: ServegateUp) -> None:
    before = _served_requests(fleet)
    for _ in range(20):
        assert _fresh(fleet.http_url, "POST", "/v2/models/digits/infer", json=BODY).is_success
    # Every scrape, whichever worker answers it, sees all 20.
    assert {_served_requests(fleet) - before for _ in range(6)} == {20.0}


def test_a_routing_change_and_a_fault_reach_every_worker(fleet: ServegateUp) -> None:
    url = fleet.http_url
    weighted = {"policy": "weighted", "default": "onnx", "weights": {"onnx": 100}}
    assert _fresh(url, "PUT", "/admin/models/digits/routing", json=weighted).status_code == 200
    fault = {"abort_status": 503, "abort_percent": 100}
    reply = _fresh(url, "PUT", "/admin/models/digits/variants/onnx/fault", json=fault)
    assert reply.status_code == 200
    for _ in range(8):
        doc = _fresh(url, "GET", "/admin/models/digits/routing").json()
        assert doc["routing"]["policy"] == "weighted"
        assert doc["faults"]["onnx"]["abort_percent"] == 100
        assert _fresh(url, "POST", "/v2/models/digits/infer", json=BODY).status_code == 503
    # A change that one worker refuses is refused as a whole, and changes nothing.
    bad = {"policy": "weighted", "default": "onnx", "weights": {"nope": 1}}
    refused = _fresh(url, "PUT", "/admin/models/digits/routing", json=bad)
    assert refused.status_code == 400 and "nope" in refused.json()["error"]
    assert _fresh(url, "DELETE", "/admin/models/digits/variants/onnx/fault").status_code == 200
    for _ in range(8):
        doc = _fresh(url, "GET", "/admin/models/digits/routing").json()
        assert doc["routing"]["policy"] == "weighted" and doc["faults"] == {}

    # Once each worker's circuit, opened by the aborts, lets calls through again.
    wait_for(lambda: _all_served(url), 60, "every worker to serve again")


def test_unload_and_load_take_effect_in_every_worker(fleet: ServegateUp) -> None:
    url = fleet.http_url
    assert _fresh(url, "POST", "/v2/repository/models/resnet18/unload").status_code == 200
    for _ in range(6):
        assert _fresh(url, "GET", "/v2/models/resnet18").status_code == 404
        index = _fresh(url, "POST", "/v2/repository/index").json()
        assert {"name": "resnet18", "state": "UNAVAILABLE", "reason": "unloaded"} in index
    assert _fresh(url, "POST", "/v2/repository/models/resnet18/load").status_code == 200
    for _ in range(6):
        assert _fresh(url, "GET", "/v2/models/resnet18/ready").status_code == 200


def test_a_killed_worker_is_restarted_with_the_fleets_state(fleet: ServegateUp) -> None:
    url = fleet.http_url
    failover = {"policy": "failover", "default": "onnx", "order": ["jax"]}
    assert _fresh(url, "PUT", "/admin/models/digits/routing", json=failover).status_code == 200
    victim = _workers(fleet)[0]
    os.kill(victim.pid, signal.SIGKILL)
    wait_for(lambda: len(_workers(fleet)) == 2 and victim.pid not in
             [p.pid for p in _workers(fleet)], 60, "the worker to be started again")  # fmt: skip
    survivor_and_new = _workers(fleet)

    wait_for(lambda: _all_served(url), 60, "both workers to serve")
    for _ in range(8):  # the new worker was welcomed with the routing set before it started
        assert _fresh(url, "GET", "/admin/models/digits/routing").json()["routing"]["policy"] == (
            "failover"
        )
    assert f"(pid {victim.pid}) exited with -9; starting it again" in fleet.log()
    assert len(survivor_and_new) == 2


def test_ctrl_c_stops_the_workers_and_the_runner(tmp_path: Path) -> None:
    up = servegate_up(tmp_path, ["onnx"], env={"SERVEGATE_WORKERS": "2"})
    workers = _workers(up)
    runner = psutil.Process(up.runner_pid("onnx"))
    assert len(workers) == 2
    assert up.stop(signal.SIGINT) == 0
    time.sleep(0.5)
    for p in [*workers, runner]:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE

"""The catalog follows the supervisor: a runner that is a new process starts with a clean
circuit, whatever the process before it did."""

from __future__ import annotations

from gateway.config import Repository
from gateway.dataplane import DataPlane
from gateway.errors import Unavailable
from gateway.health import RunnerState, RunnerStatus
from gateway.router.circuit import CircuitState
from gateway.tensors import InferRequest, InferResponse
from tests.doubles import FunctionBackend


def failing(_: InferRequest) -> InferResponse:
    raise Unavailable("the runner died")


def test_a_new_runner_process_resets_its_variants_circuits(tiny_repo: Repository) -> None:
    plane = DataPlane(tiny_repo, {("tiny", "a"): FunctionBackend("tiny@a", failing)})
    plane.runner_status(RunnerStatus("onnx", RunnerState.READY, pid=10, endpoint="e"))
    breaker = plane.catalog.models["tiny"].router.circuits.breaker("a")
    for _ in range(breaker.config.consecutive_failures):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, ok=False, failed=True)
    assert breaker.state is CircuitState.OPEN

    plane.runner_status(RunnerStatus("onnx", RunnerState.READY, pid=10, endpoint="e"))
    assert breaker.state is CircuitState.OPEN  # the same process: its record stands
    plane.runner_status(RunnerStatus("onnx", RunnerState.RESTARTING, pid=10, endpoint="e"))
    plane.runner_status(RunnerStatus("onnx", RunnerState.READY, pid=11, endpoint="e"))
    assert breaker.state is CircuitState.CLOSED  # restarted: a new process

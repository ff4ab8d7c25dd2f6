"""The runner host over fake engines: a deadline passed in the queue skips the model; a
fast model runs on the loop, never beside a call in the model thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from gateway.config import ModelConfig, Repository, VariantConfig
from gateway.errors import DeadlineExceeded
from gateway.protocol import v2_grpc
from gateway.protocol.pb import v2_pb2 as pb
from gateway.tensors import InferRequest, Tensor
from runners.host import INLINE_BELOW_S, Loaded, Predict, RunnerService


class SlowEngine:
    kind = "onnx"
    platform = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def load(self, model: ModelConfig, variant: VariantConfig, artifact: Path) -> Predict:
        def predict(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
            self.calls += 1
            time.sleep(0.2)
            return {"y": inputs["x"] * 2}

        return predict

    def device(self) -> str:
        return "cpu"


def _request(timeout_us: int | None = None, rows: int = 1) -> InferRequest:
    return InferRequest(
        "tiny",
        (Tensor("x", "FP32", np.ones((rows, 4), np.float32)),
         Tensor("tag", "BYTES", np.array([b"a"] * rows, dtype=object))),
        parameters={"timeout": timeout_us} if timeout_us else {},
    )  # fmt: skip


async def test_work_whose_deadline_passed_in_the_queue_is_not_computed(
    tiny_repo: Repository,
) -> None:
    engine = SlowEngine()
    model = tiny_repo["tiny"]
    service = RunnerService(
        engine, {("tiny", "1"): Loaded(model, "1", engine.load(model, model.variants["a"], Path()))}
    )
    first = asyncio.ensure_future(service.infer(v2_grpc.request_to_pb(_request())))
    await asyncio.sleep(0.01)
    with pytest.raises(DeadlineExceeded, match="queued in the runner"):
        await service.infer(v2_grpc.request_to_pb(_request(timeout_us=50_000)))
    reply = v2_grpc.response_from_pb(await first)
    np.testing.assert_array_equal(reply.outputs[0].data, np.full((1, 4), 2.0, np.float32))
    assert engine.calls == 1


class RecordingEngine:
    """Records the thread of every call and the most calls ever running at once; a call
    of `slow_rows` rows takes `slow_s`."""

    kind = "onnx"
    platform = "fake"

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.slow_rows = -1
        self.slow_s = 0.0

    def load(self, model: ModelConfig, variant: VariantConfig, artifact: Path) -> Predict:
        def predict(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.threads.append(threading.current_thread().name)
            if len(inputs["x"]) == self.slow_rows:
                time.sleep(self.slow_s)
            self.running -= 1
            return {"y": inputs["x"] * 2}

        return predict

    def device(self) -> str:
        return "cpu"


def _recording(tiny_repo: Repository) -> tuple[RecordingEngine, RunnerService]:
    engine = RecordingEngine()
    model = tiny_repo["tiny"]
    loaded = Loaded(model, "1", engine.load(model, model.variants["a"], Path()))
    return engine, RunnerService(engine, {("tiny", "1"): loaded})


def _rows(n: int) -> pb.ModelInferRequest:
    return v2_grpc.request_to_pb(_request(rows=n))


async def test_a_fast_model_runs_on_the_loop_once_its_shapes_are_known(
    tiny_repo: Repository,
) -> None:
    engine, service = _recording(tiny_repo)
    for n in (1, 1, 1, 2, 2):
        reply = v2_grpc.response_from_pb(await service.infer(_rows(n)))
        np.testing.assert_array_equal(reply.outputs[0].data, np.full((n, 4), 2.0, np.float32))
    loop_thread = threading.current_thread().name
    # A shape's first call (a JAX compile, ORT's first run) goes to the model thread.
    assert engine.threads == ["predict_0", loop_thread, loop_thread, "predict_0", loop_thread]


async def test_a_slow_call_sends_the_next_one_of_its_shape_to_the_thread(
    tiny_repo: Repository,
) -> None:
    engine, service = _recording(tiny_repo)
    await service.infer(_rows(1))
    engine.slow_rows, engine.slow_s = 1, 10 * INLINE_BELOW_S
    await service.infer(_rows(1))  # known fast: on the loop, and slow this time
    await service.infer(_rows(1))
    assert engine.threads[1:] == [threading.current_thread().name, "predict_0"]


async def test_calls_never_overlap_a_call_in_the_thread(tiny_repo: Repository) -> None:
    engine, service = _recording(tiny_repo)
    await service.infer(_rows(1))
    await service.infer(_rows(1))  # (1, 4) is now known to be fast
    engine.slow_rows, engine.slow_s = 3, 0.2
    slow = asyncio.ensure_future(service.infer(_rows(3)))  # a new shape: the thread
    await asyncio.sleep(0.05)
    await service.infer(_rows(1))  # must queue behind it, not run beside it on the loop
    await slow
    assert engine.most_at_once == 1
    assert engine.threads[2:] == ["predict_0", "predict_0"]

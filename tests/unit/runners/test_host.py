"""The runner host over a fake engine: a deadline passed in the queue skips the model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from gateway.config import ModelConfig, Repository, VariantConfig
from gateway.errors import DeadlineExceeded
from gateway.protocol import v2_grpc
from gateway.tensors import InferRequest, Tensor
from runners.host import Loaded, Predict, RunnerService


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


def _request(timeout_us: int | None = None) -> InferRequest:
    return InferRequest(
        "tiny",
        (Tensor("x", "FP32", np.ones((1, 4), np.float32)),
         Tensor("tag", "BYTES", np.array([b"a"], dtype=object))),
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

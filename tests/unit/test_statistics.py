"""The statistics extension: counts equal what was sent, durations add up and are ordered."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson

from gateway.api.http import create_app
from gateway.config import Repository
from gateway.dataplane import DataPlane
from gateway.statistics import Statistics
from gateway.tensors import InferRequest, InferResponse, Tensor
from tests.doubles import FunctionBackend

BODY = orjson.dumps(
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
                {"name": "tag", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
)  # fmt: skip


async def slow_echo(request: InferRequest) -> InferResponse:
    await asyncio.sleep(0.01)
    return InferResponse(request.model_name, (Tensor("y", "FP32", request.inputs[0].data),))


def test_a_variant_alone_and_summed_into_its_model() -> None:
    stats = Statistics()
    stats.request(("m", "1", "a"), True, 0.5)
    stats.request(("m", "1", "b"), False, 0.25)
    stats.execution(("m", "1", "a"), rows=3, queued=[0.1, 0.2], compute_input_s=0.01,
                    compute_infer_s=0.2, compute_output_s=0.02)  # fmt: skip
    (whole,) = stats.report("m")
    assert whole["name"] == "m" and whole["inference_stats"]["success"] == {"count": 1, "ns": 5e8}
    assert whole["inference_stats"]["fail"]["count"] == 1
    assert (whole["inference_count"], whole["execution_count"]) == (3, 1)
    # per request, as Triton: both members spent the call's 0.2 s
    assert whole["inference_stats"]["compute_infer"] == {"count": 2, "ns": 4e8}
    assert whole["batch_stats"][0]["batch_size"] == 3
    (only_b,) = stats.report("m", variant="b")
    assert only_b["name"] == "m@b" and only_b["execution_count"] == 0
    names = [e["name"] for e in stats.report()]
    assert names == ["m", "m@a", "m@b"]


async def test_counters_equal_the_requests_sent_and_durations_are_ordered(
    tiny_repo: Repository,
) -> None:
    tiny = tiny_repo["tiny"]
    plane = DataPlane(tiny_repo, {("tiny", "a"): FunctionBackend("tiny@a", slow_echo)})
    assert tiny.batching is None  # unbatched: one execution a request
    app = create_app(plane, max_body_bytes=1 << 20)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
        for _ in range(7):
            assert (await c.post("/v2/models/tiny/infer", content=BODY)).status_code == 200
        await c.post("/v2/models/tiny/infer", content=b'{"inputs": []}')  # refused: no stats
        reply = (await c.get("/v2/models/tiny/stats")).json()
        everything = (await c.get("/v2/models/stats")).json()
    (stats,) = reply["model_stats"]
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == 7 and inference["fail"]["count"] == 0
    assert stats["inference_count"] == stats["execution_count"] == 7
    assert inference["compute_infer"]["ns"] >= 7 * 10_000_000  # 10 ms each, at least
    assert inference["success"]["ns"] >= inference["compute_infer"]["ns"] > 0
    assert [e["name"] for e in everything["model_stats"]] == ["tiny", "tiny@a"]


def test_no_traffic_yet_is_a_zero_entry_not_an_error(tiny_repo: Repository) -> None:
    plane = DataPlane(tiny_repo, {("tiny", "a"): FunctionBackend("tiny@a", slow_echo)})
    (entry,) = plane.model_statistics("tiny@b")
    assert entry["name"] == "tiny@b" and entry["inference_count"] == 0
    assert np.isclose(entry["inference_stats"]["success"]["count"], 0)

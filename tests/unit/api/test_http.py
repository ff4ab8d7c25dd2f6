"""The HTTP front end over a FunctionBackend: status mapping, deadlines, metrics, BYTES."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import numpy as np
import orjson
import pytest

from gateway.api.http import create_app
from gateway.config import Repository
from gateway.dataplane import DataPlane
from gateway.errors import Overloaded, Unavailable
from gateway.metrics import Metrics
from gateway.tensors import InferRequest, InferResponse, Tensor
from tests.doubles import FunctionBackend


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def echo(request: InferRequest) -> InferResponse:
    x = next(t for t in request.inputs if t.name == "x")
    return InferResponse(request.model_name, (Tensor("y", "FP32", x.data * 2),))


BODY = orjson.dumps(
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
                {"name": "tag", "datatype": "BYTES", "shape": [1], "data": ["héllo"]}]}
)  # fmt: skip


@pytest.fixture
def backend() -> FunctionBackend:
    return FunctionBackend("tiny@a", echo)


@pytest.fixture
def plane(tiny_repo: Repository, backend: FunctionBackend) -> DataPlane:
    return DataPlane(tiny_repo, {("tiny", "a"): backend}, clock=FakeClock(), metrics=Metrics())


@pytest.fixture
async def http(plane: DataPlane) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(plane, max_body_bytes=1 << 20)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        yield c


async def test_infer_json(http: httpx.AsyncClient, backend: FunctionBackend) -> None:
    reply = await http.post("/v2/models/tiny/infer", content=BODY)
    assert reply.status_code == 200
    assert reply.json()["outputs"][0]["data"] == [2, 4, 6, 8]
    request, _ = backend.calls[0]
    assert request.inputs[1].data.tolist() == ["héllo".encode()]


async def test_deadline_from_timeout_parameter_and_default(
    http: httpx.AsyncClient, backend: FunctionBackend
) -> None:
    await http.post("/v2/models/tiny/infer", content=BODY)
    doc = orjson.loads(BODY) | {"parameters": {"timeout": 250_000}}
    await http.post("/v2/models/tiny/infer", content=orjson.dumps(doc))
    assert [deadline for _, deadline in backend.calls] == [1010.0, 1000.25]


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (Unavailable("runner gone"), 503, None),
        (Overloaded("queue full", retry_after=2.0), 429, "2"),
    ],
)
async def test_backend_errors_map_to_status(
    http: httpx.AsyncClient,
    backend: FunctionBackend,
    error: Exception,
    status: int,
    retry_after: str | None,
) -> None:
    def fail(_: InferRequest) -> InferResponse:
        raise error

    backend.handler = fail
    reply = await http.post("/v2/models/tiny/infer", content=BODY)
    assert reply.status_code == status
    assert reply.json() == {"error": str(error)}
    assert reply.headers.get("retry-after") == retry_after


async def test_unexpected_errors_are_500_in_v2_shape(
    http: httpx.AsyncClient, backend: FunctionBackend
) -> None:
    def boom(_: InferRequest) -> InferResponse:
        raise RuntimeError("kaput")

    backend.handler = boom
    reply = await http.post("/v2/models/tiny/infer", content=BODY)
    assert reply.status_code == 500
    assert "kaput" in reply.json()["error"]


async def test_unknown_route_is_v2_shaped(http: httpx.AsyncClient) -> None:
    reply = await http.get("/v2/nothing/here")
    assert reply.status_code == 404
    assert "error" in reply.json()


async def test_metrics_count_outcomes(http: httpx.AsyncClient) -> None:
    await http.post("/v2/models/tiny/infer", content=BODY)
    await http.post("/v2/models/tiny/infer", content=b"{")
    await http.post("/v2/models/nope/infer", content=BODY)
    text = (await http.get("/metrics")).text
    assert (
        'servegate_requests_total{model="tiny",outcome="ok",protocol="http",variant="a"} 1.0'
        in text
    )
    assert 'outcome="ModelNotFound",protocol="http",variant=""} 1.0' in text
    assert 'servegate_backend_seconds_count{model="tiny",variant="a"} 1.0' in text


async def test_ready_reflects_the_backend(
    http: httpx.AsyncClient, backend: FunctionBackend
) -> None:
    assert (await http.get("/v2/models/tiny/ready")).status_code == 200
    backend.is_ready = False
    reply = await http.get("/v2/models/tiny/ready")
    assert (reply.status_code, reply.json()["ready"]) == (503, False)
    assert (await http.get("/v2/health/ready")).status_code == 503
    assert 'servegate_variant_up{model="tiny",variant="a"} 0.0' in (await http.get("/metrics")).text


async def test_variant_without_backend_is_503(http: httpx.AsyncClient) -> None:
    reply = await http.post("/v2/models/tiny@b/infer", content=BODY)
    assert reply.status_code == 503
    assert "variant 'b' of model 'tiny' is not served" in reply.json()["error"]


async def test_binary_output_on_request(http: httpx.AsyncClient) -> None:
    doc = orjson.loads(BODY) | {"outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    reply = await http.post("/v2/models/tiny/infer", content=orjson.dumps(doc))
    length = int(reply.headers["inference-header-content-length"])
    assert np.frombuffer(reply.content[length:], np.float32).tolist() == [2, 4, 6, 8]


async def test_gateway_parameters_stay_in_the_gateway(
    http: httpx.AsyncClient, backend: FunctionBackend
) -> None:
    doc = orjson.loads(BODY) | {
        "parameters": {"variant": "a", "timeout": 100_000, "binary_data_output": False, "k": 1}
    }
    assert (await http.post("/v2/models/tiny/infer", content=orjson.dumps(doc))).status_code == 200
    request, _ = backend.calls[0]
    assert dict(request.parameters) == {"k": 1}


async def test_header_and_parameter_pins_must_agree(http: httpx.AsyncClient) -> None:
    doc = orjson.loads(BODY) | {"parameters": {"variant": "b"}}
    reply = await http.post(
        "/v2/models/tiny/infer", content=orjson.dumps(doc), headers={"servegate-variant": "a"}
    )
    assert reply.status_code == 400
    assert "conflicting variant pins" in reply.json()["error"]

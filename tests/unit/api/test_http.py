"""The HTTP front end over a FunctionBackend: status mapping, deadlines, metrics, BYTES."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from gateway.api.http import create_app
from gateway.config import Repository, load_repository
from gateway.dataplane import DataPlane
from gateway.errors import Overloaded, Unavailable
from gateway.metrics import Metrics
from gateway.tensors import InferRequest, InferResponse, Tensor
from tests.conftest import TINY_MODEL
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
    message = reply.json()["error"]
    assert "kaput" not in message and "RuntimeError" not in message  # nothing internal leaks
    assert re.fullmatch(r"internal error \(error id [0-9a-f]{12}\)", message)


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


async def test_only_what_a_runner_reads_reaches_it(
    http: httpx.AsyncClient, backend: FunctionBackend
) -> None:
    """Our onnx runner reads no request parameter: none is forwarded (nor the outputs the
    client picked: the gateway selects them), so none splits a batch."""
    doc = orjson.loads(BODY) | {
        "parameters": {"variant": "a", "timeout": 100_000, "binary_data_output": False, "k": 1},
        "outputs": [{"name": "y"}],
    }
    assert (await http.post("/v2/models/tiny/infer", content=orjson.dumps(doc))).status_code == 200
    request, _ = backend.calls[0]
    assert dict(request.parameters) == {} and request.outputs == ()


async def test_an_external_v2_server_gets_every_parameter_but_the_gateways(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ext"
    folder.mkdir()
    (folder / "model.yaml").write_text(
        TINY_MODEL.replace("runner: onnx", "runner: v2, endpoint: 'h:1'")
    )
    backend = FunctionBackend("ext@a", echo)
    plane = DataPlane(load_repository(tmp_path), {("ext", "a"): backend}, metrics=Metrics())
    doc = orjson.loads(BODY) | {"parameters": {"timeout": 100_000, "k": 1, "content_type": "t"}}
    app = create_app(plane, max_body_bytes=1 << 20)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
        assert (await c.post("/v2/models/ext/infer", content=orjson.dumps(doc))).status_code == 200
    request, _ = backend.calls[0]
    assert dict(request.parameters) == {"k": 1, "content_type": "t"}


async def test_header_and_parameter_pins_must_agree(http: httpx.AsyncClient) -> None:
    doc = orjson.loads(BODY) | {"parameters": {"variant": "b"}}
    reply = await http.post(
        "/v2/models/tiny/infer", content=orjson.dumps(doc), headers={"servegate-variant": "a"}
    )
    assert reply.status_code == 400
    assert "conflicting variant pins" in reply.json()["error"]


async def test_overload_is_refused_before_the_body_is_read(tiny_repo: Repository) -> None:
    """Past a variant's concurrency limit, 429 with Retry-After comes at once: the server
    does not wait for (or read) the body; a body no budget could ever hold is 413."""
    release = asyncio.Event()
    entered = asyncio.Semaphore(0)

    async def slow(request: InferRequest) -> InferResponse:
        entered.release()
        await release.wait()
        return echo(request)

    backend = FunctionBackend("tiny@a", slow)
    plane = DataPlane(
        tiny_repo, {("tiny", "a"): backend}, max_concurrency=2, max_queued_bytes=10_000
    )
    app = create_app(plane, max_body_bytes=1 << 20)
    reads: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        reads.append(1)
        yield BODY

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
        busy = [asyncio.ensure_future(c.post("/v2/models/tiny/infer", content=BODY)) for _ in "ab"]
        for _ in busy:
            await entered.acquire()  # both are in flight, holding the two slots
        reply = await c.post(
            "/v2/models/tiny/infer", content=body(), headers={"content-length": str(len(BODY))}
        )
        assert reply.status_code == 429 and reads == []  # refused without reading a byte
        assert reply.headers["retry-after"] == "1"
        assert "max_concurrency 2" in reply.json()["error"]
        huge = await c.post(
            "/v2/models/tiny/infer", content=body(), headers={"content-length": "20000"}
        )
        assert huge.status_code == 413 and "retry-after" not in huge.headers and reads == []
        release.set()
        assert [r.status_code for r in await asyncio.gather(*busy)] == [200, 200]
    assert plane.admission.queued_bytes == 0 and plane.admission.inflight("tiny@a") == 0


@pytest.mark.parametrize("value", ["²", "١٢", "12a", "-1", " ", "1e3"])
async def test_length_headers_that_are_not_ascii_integers_are_400(
    http: httpx.AsyncClient, value: str
) -> None:
    reply = await http.post(
        "/v2/models/tiny/infer",
        content=BODY,
        headers={"inference-header-content-length": value.encode()},
    )
    assert reply.status_code == 400, reply.text
    assert "Inference-Header-Content-Length must be a non-negative integer" in reply.json()["error"]


@pytest.mark.parametrize("timeout", [True, "1", -5, [1], {"a": 1}])
async def test_a_timeout_that_is_not_microseconds_is_400(
    http: httpx.AsyncClient, timeout: object
) -> None:
    doc = orjson.loads(BODY) | {"parameters": {"timeout": timeout}}
    reply = await http.post("/v2/models/tiny/infer", content=orjson.dumps(doc))
    assert reply.status_code == 400, reply.text


@pytest.mark.parametrize("timeout", [0, 1, 10**18, 2**63 - 1, 1e300])
async def test_any_timeout_in_range_is_served(http: httpx.AsyncClient, timeout: object) -> None:
    doc = orjson.loads(BODY) | {"parameters": {"timeout": timeout}}
    reply = await http.post("/v2/models/tiny/infer", content=orjson.dumps(doc))
    assert reply.status_code in (200, 504), reply.text  # 1 us may pass before the call


async def test_infer_is_post_only(http: httpx.AsyncClient) -> None:
    r = await http.get("/v2/models/tiny/infer")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert "POST" in r.json()["error"]


async def test_infer_answers_gzip_only_when_accepted_and_worth_it(
    http: httpx.AsyncClient, backend: FunctionBackend
) -> None:
    def wide(request: InferRequest) -> InferResponse:
        return InferResponse(request.model_name, (Tensor("y", "FP32", np.zeros((1, 512))),))

    backend.handler = wide
    zipped = await http.post(
        "/v2/models/tiny/infer", content=BODY, headers={"Accept-Encoding": "gzip"}
    )
    plain = await http.post(
        "/v2/models/tiny/infer", content=BODY, headers={"Accept-Encoding": "identity"}
    )
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.json() == plain.json()  # httpx inflates the gzip answer
    assert int(zipped.headers["content-length"]) < len(plain.content) // 4

    backend.handler = echo  # a small answer is not worth compressing
    small = await http.post(
        "/v2/models/tiny/infer", content=BODY, headers={"Accept-Encoding": "gzip"}
    )
    assert small.status_code == 200 and "content-encoding" not in small.headers


async def test_infer_echoes_the_request_id(http: httpx.AsyncClient) -> None:
    r = await http.post("/v2/models/tiny/infer", content=BODY, headers={"X-Request-ID": "r-7"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "r-7"
    bad = await http.post("/v2/models/tiny/infer", content=b"{", headers={"X-Request-ID": "r-8"})
    assert bad.status_code == 400 and bad.headers["x-request-id"] == "r-8"


async def test_openapi_lists_the_infer_routes(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert paths["/v2/models/{model}/infer"]["post"]["tags"] == ["inference"]
    assert "/v2/models/{model}/versions/{version}/infer" in paths
    assert "/v2/models/{model}/ready" in paths  # FastAPI's own routes are still there

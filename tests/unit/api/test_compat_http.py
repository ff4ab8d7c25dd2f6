"""TF Serving REST and TorchServe inference routes over FunctionBackends: the paths, pins,
status codes and error bodies each API's callers rely on. (Real runners and real
clients: tests/conformance/test_tfserving_compat.py, test_torchserve_compat.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.api.http import create_app
from gateway.config import Repository, load_repository
from gateway.dataplane import DataPlane
from gateway.errors import Overloaded
from gateway.tensors import InferRequest, InferResponse, Tensor
from tests.conftest import TINY_MODEL
from tests.doubles import FunctionBackend

ONE_MODEL = """
versions: [1, 2]
signature:
  inputs: [{name: pixels, datatype: FP32, shape: [-1, 3]}]
  outputs: [{name: logits, datatype: FP32, shape: [-1, 2]}]
routing: {default: a}
variants:
  a: {runner: onnx, artifact: model.onnx}
  b: {runner: jax, artifact: model.jax}
"""


def tiny(request: InferRequest) -> InferResponse:
    x = next(t for t in request.inputs if t.name == "x")
    return InferResponse(request.model_name, (Tensor("y", "FP32", x.data * 2),))


def one(variant: str) -> object:
    def answer(request: InferRequest) -> InferResponse:
        (x,) = request.inputs
        logits = np.stack([x.data.sum(axis=1), np.full(len(x.data), ord(variant))], axis=1)
        return InferResponse(request.model_name, (Tensor("logits", "FP32", logits),))

    return answer


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    for name, text in (("tiny", TINY_MODEL), ("one", ONE_MODEL)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.yaml").write_text(text)
    return load_repository(tmp_path)


@pytest.fixture
def backends() -> dict[tuple[str, str], FunctionBackend]:
    return {
        ("tiny", "a"): FunctionBackend("tiny@a", tiny),
        ("one", "a"): FunctionBackend("one@a", one("a")),  # type: ignore[arg-type]
        ("one", "b"): FunctionBackend("one@b", one("b")),  # type: ignore[arg-type]
    }


@pytest.fixture
async def http(
    repo: Repository, backends: dict[tuple[str, str], FunctionBackend]
) -> AsyncIterator[httpx.AsyncClient]:
    plane = DataPlane(repo, backends)
    app = create_app(plane, max_body_bytes=4096)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        yield client


ROWS = {"instances": [[1, 2, 3], [4, 5, 6]]}


async def test_predict_row_and_columnar(http: httpx.AsyncClient) -> None:
    reply = await http.post("/v1/models/one:predict", json=ROWS)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": [[6.0, 97.0], [15.0, 97.0]]}
    reply = await http.post("/v1/models/one/versions/2:predict", json={"inputs": [[1, 1, 1]]})
    assert reply.json() == {"outputs": [[3.0, 97.0]]}
    reply = await http.post(
        "/v1/models/tiny:predict", json={"instances": [{"x": [1, 2, 3, 4], "tag": {"b64": "YQ=="}}]}
    )
    assert reply.json() == {"predictions": [[2.0, 4.0, 6.0, 8.0]]}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/models/one/labels/b:predict", {}),
        ("/v1/models/one@b:predict", {}),
        ("/v1/models/one:predict", {"servegate-variant": "b"}),
        ("/v1/models/one@b/labels/b:predict", {"servegate-variant": "b"}),
    ],
)
async def test_every_pin_reaches_the_variant(
    http: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    reply = await http.post(path, json=ROWS, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"][0][1] == ord("b")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "/v1/models/nope:predict", ROWS, 404, "unknown model 'nope'"),
        ("POST", "/v1/models/one/versions/3:predict", ROWS, 404, "no version '3'"),
        ("POST", "/v1/models/one/labels/canary:predict", ROWS, 404, "no variant 'canary'"),
        ("POST", "/v1/models/one@a/labels/b:predict", ROWS, 400, "conflicting"),
        ("POST", "/v1/models/one:predict", {"signature_name": "x", **ROWS}, 400, "signature"),
        ("POST", "/v1/models/one:predict", {"instances": [[1, 2]]}, 400, "shape [1, 2]"),
        ("POST", "/v1/models/one:predict", {"instances": [[1] * 3000]}, 413, "limit"),
        ("POST", "/v1/models/one:classify", {"examples": []}, 501, "':predict'"),
        ("POST", "/v1/models/one/versions/1:regress", {"examples": []}, 501, "':predict'"),
        ("GET", "/v1/models/nope", None, 404, "unknown model"),
        ("GET", "/v1/models/one/versions/9/metadata", None, 404, "no version '9'"),
    ],
)
async def test_tf_serving_errors_are_json_with_the_status(
    http: httpx.AsyncClient, method: str, path: str, body: object, status: int, words: str
) -> None:
    reply = await http.request(method, path, json=body)
    assert reply.status_code == status, reply.text
    assert words in reply.json()["error"]


async def test_status_and_metadata(
    http: httpx.AsyncClient, backends: dict[tuple[str, str], FunctionBackend]
) -> None:
    reply = await http.get("/v1/models/one")
    assert [(s["version"], s["state"]) for s in reply.json()["model_version_status"]] == [
        ("1", "AVAILABLE"),
        ("2", "AVAILABLE"),
    ]
    backends[("one", "b")].is_ready = False
    reply = await http.get("/v1/models/one/labels/b")
    assert {s["state"] for s in reply.json()["model_version_status"]} == {"UNKNOWN"}
    reply = await http.get("/v1/models/one/versions/1")
    assert [s["version"] for s in reply.json()["model_version_status"]] == ["1"]
    reply = await http.get("/v1/models/one/metadata")
    doc = reply.json()
    assert doc["model_spec"]["version"] == "2"
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert list(sig["inputs"]) == ["pixels"] and list(sig["outputs"]) == ["logits"]


# ---- TorchServe -------------------------------------------------------------------------


async def test_torchserve_json_and_raw(http: httpx.AsyncClient) -> None:
    reply = await http.post("/predictions/one", json={"data": [1, 2, 3]})
    assert reply.status_code == 200, reply.text
    assert reply.json() == [6.0, 97.0]
    raw = np.array([[1, 2, 3], [1, 1, 1]], np.float32).tobytes()
    reply = await http.put(
        "/predictions/one/1.0", content=raw, headers={"content-type": "application/octet-stream"}
    )
    assert reply.headers["content-type"] == "application/octet-stream"
    assert np.frombuffer(reply.content, np.float32).tolist() == [6, 97, 3, 97]
    reply = await http.post(
        "/predictions/one@b", content=raw, headers={"accept": "application/json"}
    )
    assert reply.json() == [[6.0, 98.0], [3.0, 98.0]]
    reply = await http.post("/predictions/tiny", json={"x": [1, 2, 3, 4], "tag": "t"})
    assert reply.json() == [2.0, 4.0, 6.0, 8.0]


async def test_torchserve_errors_are_its_own_shape(
    http: httpx.AsyncClient, backends: dict[tuple[str, str], FunctionBackend]
) -> None:
    reply = await http.post("/predictions/nope", json=[1, 2, 3])
    assert reply.status_code == 404
    assert reply.json() == {
        "code": 404,
        "type": "ModelNotFoundException",
        "message": "unknown model 'nope'",
    }
    reply = await http.post("/predictions/tiny", content=b"\0" * 16)
    assert reply.status_code == 400 and reply.json()["type"] == "BadRequestException"

    def busy(_: InferRequest) -> InferResponse:
        raise Overloaded("queue full", retry_after=2.5)

    backends[("one", "a")].handler = busy
    reply = await http.post("/predictions/one", json=[1, 2, 3])
    assert reply.status_code == 429 and reply.headers["retry-after"] == "3"
    assert reply.json()["type"] == "ServiceUnavailableException"

    def broken(_: InferRequest) -> InferResponse:
        raise RuntimeError("/secret/path exploded")

    backends[("one", "a")].handler = broken
    reply = await http.post("/predictions/one", json=[1, 2, 3])
    assert reply.status_code == 500 and "secret" not in reply.text
    assert reply.json()["type"] == "InternalServerException"
    assert "error id" in reply.json()["message"]


async def test_ping(
    http: httpx.AsyncClient, backends: dict[tuple[str, str], FunctionBackend]
) -> None:
    reply = await http.get("/ping")
    assert (reply.status_code, reply.json()) == (200, {"status": "Healthy"})
    backends[("tiny", "a")].is_ready = False
    reply = await http.get("/ping")
    assert (reply.status_code, json.loads(reply.text)) == (500, {"status": "Unhealthy"})

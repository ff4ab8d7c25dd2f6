"""Only who may: API keys with scopes and TLS on a real gateway over the real onnx runner,
through clients we did not write (tritonclient over TLS, httpx over HTTPS, grpc)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from gateway.config import Repository
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import V2Stub
from tests.certs import Certs, make_certs
from tests.live import LiveRunners, RunningGateway, start_gateway

pytestmark = [pytest.mark.conformance, pytest.mark.integration]

INFER_KEY = "infer-key-1f3a"
ADMIN_KEY = "admin-key-9c2d"
WRONG_KEY = "not-a-key"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def secured(repository: Repository, runners: LiveRunners, certs: Certs) -> Iterator[RunningGateway]:
    """A gateway with keys (metrics for admins only) and TLS on both front ends."""
    gw = start_gateway(
        repository,
        {"onnx": runners.hop("onnx")},
        infer_keys=INFER_KEY,
        admin_keys=ADMIN_KEY,
        metrics_scope="admin",
        tls_certfile=certs.server_cert,
        tls_keyfile=certs.server_key,
    )
    yield gw
    gw.stop()


def _https(gw: RunningGateway, certs: Certs, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(
        base_url=f"https://127.0.0.1:{gw.gateway.http_port}",
        verify=ssl.create_default_context(cafile=certs.ca),
        headers=headers,
        timeout=30,
    )


def _body(x: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": x[0].tolist()}
        ]
    }


@pytest.mark.parametrize(
    ("key", "infer", "metadata", "metrics", "admin"),
    [
        (None, 401, 401, 401, 401),
        (WRONG_KEY, 401, 401, 401, 401),
        (INFER_KEY, 200, 200, 403, 403),
        (ADMIN_KEY, 200, 200, 200, 200),
    ],
)
def test_http_auth_matrix(
    secured: RunningGateway,
    certs: Certs,
    digits: dict[str, np.ndarray],
    key: str | None,
    infer: int,
    metadata: int,
    metrics: int,
    admin: int,
) -> None:
    with _https(secured, certs, key) as http:
        reply = http.post("/v2/models/digits/infer", json=_body(digits["inputs"]))
        assert reply.status_code == infer, reply.text
        if infer == 200:
            logits = np.array(reply.json()["outputs"][0]["data"]).reshape(1, 10)
            np.testing.assert_allclose(logits, digits["logits"][:1], rtol=0, atol=1e-4)
        else:
            assert "error" in reply.json() and "www-authenticate" in reply.headers
        assert http.get("/v2/models/digits").status_code == metadata
        assert http.get("/v2/health/ready").status_code == metadata
        assert http.get("/metrics").status_code == metrics
        assert http.get("/admin/runners").status_code == admin


def test_plain_http_to_a_tls_gateway_gets_nothing(secured: RunningGateway) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{secured.gateway.http_port}/v2/health/live", timeout=5)


def _grpc(gw: RunningGateway, certs: Certs) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(certs.ca.read_bytes())
    return grpc.secure_channel(gw.grpc_address, creds)


@pytest.mark.parametrize(
    ("key", "expected", "admin"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED),
        (WRONG_KEY, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED),
        (INFER_KEY, grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED),
        (ADMIN_KEY, grpc.StatusCode.OK, grpc.StatusCode.OK),
    ],
)
def test_grpc_auth_matrix(
    secured: RunningGateway,
    certs: Certs,
    key: str | None,
    expected: grpc.StatusCode,
    admin: grpc.StatusCode,
) -> None:
    metadata = (("authorization", f"Bearer {key}"),) if key else None

    def code(call: Callable[[], object]) -> grpc.StatusCode:
        try:
            call()
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[attr-defined,no-any-return]
        return grpc.StatusCode.OK

    with _grpc(secured, certs) as channel:
        stub = V2Stub(channel)  # type: ignore[arg-type]
        meta = pb.ModelMetadataRequest(name="digits")
        assert code(lambda: stub.ModelMetadata(meta, metadata=metadata, timeout=10)) == expected
        index = pb.RepositoryIndexRequest()
        assert code(lambda: stub.RepositoryIndex(index, metadata=metadata, timeout=10)) == admin


def test_tritonclient_over_tls_with_a_key(
    secured: RunningGateway, certs: Certs, digits: dict[str, np.ndarray]
) -> None:
    client = triton_grpc.InferenceServerClient(
        secured.grpc_address, ssl=True, root_certificates=str(certs.ca)
    )
    headers = {"authorization": f"Bearer {INFER_KEY}"}
    assert client.is_server_live(headers=headers)
    inp = triton_grpc.InferInput("pixels", [2, 64], "FP32")
    inp.set_data_from_numpy(np.ascontiguousarray(digits["inputs"][:2]))
    result = client.infer("digits@onnx", [inp], headers=headers)
    np.testing.assert_allclose(
        result.as_numpy("logits"), digits["logits"][:2], rtol=0, atol=1e-4
    )
    with pytest.raises(InferenceServerException, match=r"missing API key"):
        client.infer("digits@onnx", [inp])
    client.close()

"""TLS from certificate files: the checks at start, and real servers on 127.0.0.1:0.

grpc.aio with `grpc_server_credentials` and uvicorn with `uvicorn_ssl_kwargs`, each with
and without mTLS, called by clients that must verify the server; tritonclient over TLS.
Certificates are made per module by tests/certs.py (the openssl CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import grpc
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.auth import access_policy
from gateway.guards import GrpcAuthInterceptor
from gateway.protocol.pb import v2_pb2 as pb
from gateway.protocol.v2_service import SERVICE, V2Stub
from gateway.tls import (
    TLSConfig,
    TLSConfigError,
    exposure_warning,
    grpc_server_credentials,
    is_loopback,
    load_tls,
    uvicorn_ssl_kwargs,
)
from tests.certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


# ---- checks at start -----------------------------------------------------------------------


def test_no_files_means_tls_off(certs: Certs) -> None:
    assert load_tls(None, None) is None
    assert uvicorn_ssl_kwargs(None) == {}


def test_checked_files_and_what_each_server_takes(certs: Certs) -> None:
    plain = load_tls(certs.server_cert, certs.server_key)
    mutual = load_tls(str(certs.server_cert), str(certs.server_key), str(certs.ca))
    assert plain is not None and mutual is not None
    assert not plain.mutual and mutual.mutual
    assert uvicorn_ssl_kwargs(plain) == {
        "ssl_certfile": str(certs.server_cert),
        "ssl_keyfile": str(certs.server_key),
        "ssl_ca_certs": None,
        "ssl_cert_reqs": ssl.CERT_NONE,
    }
    assert uvicorn_ssl_kwargs(mutual)["ssl_ca_certs"] == str(certs.ca)
    assert uvicorn_ssl_kwargs(mutual)["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert b"PRIVATE KEY" not in repr(mutual).encode()


def test_half_a_configuration_is_refused(certs: Certs) -> None:
    with pytest.raises(TLSConfigError, match="both a certificate file and its key"):
        load_tls(certs.server_cert, None)
    with pytest.raises(TLSConfigError, match="both a certificate file and its key"):
        load_tls(None, certs.server_key)
    with pytest.raises(TLSConfigError, match="client CA needs a server certificate"):
        load_tls(None, None, certs.ca)


def test_missing_or_unreadable_files_fail_naming_them(certs: Certs, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(TLSConfigError, match=r"certificate .*nowhere\.pem: cannot read it"):
        load_tls(missing, certs.server_key)
    with pytest.raises(TLSConfigError, match=r"key .*nowhere\.pem: cannot read it"):
        load_tls(certs.server_cert, missing)
    with pytest.raises(TLSConfigError, match=r"client CA .*: cannot read it"):
        load_tls(certs.server_cert, certs.server_key, tmp_path)  # a folder


def test_bad_contents_fail_at_start(certs: Certs, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TLSConfigError, match="matching"):
        load_tls(certs.server_cert, certs.client_key)  # another certificate's key
    with pytest.raises(TLSConfigError, match="matching"):
        load_tls(garbage, certs.server_key)
    with pytest.raises(TLSConfigError, match="no PEM certificate"):
        load_tls(certs.server_cert, certs.server_key, garbage)


# ---- exposure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.8.7", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_warning() -> None:
    assert exposure_warning("127.0.0.1", auth_on=False, tls_on=False) is None
    assert exposure_warning("0.0.0.0", auth_on=True, tls_on=True) is None
    both = exposure_warning("0.0.0.0", auth_on=False, tls_on=False)
    assert both is not None and "API keys" in both and "TLS" in both and "0.0.0.0" in both
    no_tls = exposure_warning("10.0.0.5", auth_on=True, tls_on=False)
    assert no_tls is not None and "TLS" in no_tls and "without API keys" not in no_tls
    no_keys = exposure_warning("::", auth_on=False, tls_on=True)
    assert no_keys is not None and "API keys" in no_keys and "without TLS" not in no_keys
    assert "every interface" in (exposure_warning("", auth_on=False, tls_on=False) or "")


# ---- gRPC ----------------------------------------------------------------------------------


async def server_live(
    _: pb.ServerLiveRequest, __: grpc.aio.ServicerContext
) -> pb.ServerLiveResponse:
    return pb.ServerLiveResponse(live=True)


@contextlib.asynccontextmanager
async def grpc_server(tls: TLSConfig, *, keys: str = "") -> AsyncIterator[int]:
    """A v2 ServerLive server on a TLS port; with `keys`, behind the auth interceptor too."""
    policy = access_policy(infer_keys=keys)
    interceptors = [GrpcAuthInterceptor(policy)] if policy.enabled else []
    server = grpc.aio.server(interceptors=interceptors)
    live = grpc.unary_unary_rpc_method_handler(
        server_live,
        request_deserializer=pb.ServerLiveRequest.FromString,
        response_serializer=pb.ServerLiveResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"ServerLive": live}),)
    )
    port = server.add_secure_port("127.0.0.1:0", grpc_server_credentials(tls))
    await server.start()
    try:
        yield port
    finally:
        await server.stop(0)


async def live_over(target: str, credentials: grpc.ChannelCredentials | None) -> bool:
    """ServerLive through a channel: secure with `credentials`, plaintext without."""
    channel = (
        grpc.aio.secure_channel(target, credentials)
        if credentials is not None
        else grpc.aio.insecure_channel(target)
    )
    async with channel:
        reply = await V2Stub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10)
    return bool(reply.live)


def client_credentials(certs: Certs, *, ca: bool = True, pair: str = "") -> grpc.ChannelCredentials:
    """Trusting our CA (or only the system roots), with the client's or a stranger's cert."""
    root = certs.ca.read_bytes() if ca else None
    if not pair:
        return grpc.ssl_channel_credentials(root_certificates=root)
    cert, key = (certs.client_cert, certs.client_key) if pair == "client" else (
        certs.stranger_cert, certs.stranger_key)  # fmt: skip
    return grpc.ssl_channel_credentials(root, key.read_bytes(), cert.read_bytes())


async def test_grpc_tls(certs: Certs) -> None:
    tls = load_tls(certs.server_cert, certs.server_key)
    assert tls is not None
    async with grpc_server(tls) as port:
        assert await live_over(f"127.0.0.1:{port}", client_credentials(certs))
        assert await live_over(f"localhost:{port}", client_credentials(certs))
        for refused in (None, client_credentials(certs, ca=False)):  # plaintext; untrusted
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await live_over(f"127.0.0.1:{port}", refused)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_grpc_mutual_tls(certs: Certs) -> None:
    tls = load_tls(certs.server_cert, certs.server_key, certs.ca)
    assert tls is not None
    async with grpc_server(tls) as port:
        assert await live_over(f"127.0.0.1:{port}", client_credentials(certs, pair="client"))
        for refused in ("", "stranger"):  # no client certificate; one from another CA
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await live_over(f"127.0.0.1:{port}", client_credentials(certs, pair=refused))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("mutual", [False, True])
async def test_tritonclient_over_tls_with_a_key(certs: Certs, mutual: bool) -> None:
    import tritonclient.grpc as triton  # the client we did not write
    from tritonclient.utils import InferenceServerException

    tls = load_tls(certs.server_cert, certs.server_key, certs.ca if mutual else None)
    assert tls is not None
    async with grpc_server(tls, keys="triton-key") as port:
        client = triton.InferenceServerClient(
            f"127.0.0.1:{port}",
            ssl=True,
            root_certificates=str(certs.ca),
            private_key=str(certs.client_key) if mutual else None,
            certificate_chain=str(certs.client_cert) if mutual else None,
        )
        try:
            auth = {"authorization": "Bearer triton-key"}
            assert await asyncio.to_thread(client.is_server_live, headers=auth, client_timeout=10)
            with pytest.raises(InferenceServerException) as caught:
                await asyncio.to_thread(client.is_server_live, client_timeout=10)
            assert "UNAUTHENTICATED" in str(caught.value.status())
        finally:
            client.close()


# ---- HTTP (uvicorn) ------------------------------------------------------------------------


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers (as gateway/server.py runs it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def live(_: Request) -> JSONResponse:
    return JSONResponse({"live": True})


@contextlib.asynccontextmanager
async def https_server(tls: TLSConfig) -> AsyncIterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    app = Starlette(routes=[Route("/v2/health/live", live)])
    config = uvicorn.Config(app, lifespan="off", log_level="warning", **uvicorn_ssl_kwargs(tls))
    server = _Uvicorn(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    until = time.monotonic() + 10
    while not server.started:  # uvicorn's own readiness flag, as gateway/server.py waits
        if task.done():
            await task
            raise RuntimeError("uvicorn stopped during start-up")
        assert time.monotonic() < until, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


def client_context(certs: Certs, *, ca: bool = True, pair: str = "") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca) if ca else None)
    if pair == "client":
        context.load_cert_chain(certs.client_cert, certs.client_key)
    elif pair == "stranger":
        context.load_cert_chain(certs.stranger_cert, certs.stranger_key)
    return context


async def get_live(url: str, context: ssl.SSLContext) -> httpx.Response:
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        return await client.get(url + "/v2/health/live")


async def test_uvicorn_tls(certs: Certs) -> None:
    tls = load_tls(certs.server_cert, certs.server_key)
    assert tls is not None
    async with https_server(tls) as port:
        for host in ("127.0.0.1", "localhost"):
            reply = await get_live(f"https://{host}:{port}", client_context(certs))
            assert reply.status_code == 200 and reply.json() == {"live": True}
        with pytest.raises(httpx.ConnectError):  # the system roots do not trust our CA
            await get_live(f"https://127.0.0.1:{port}", client_context(certs, ca=False))
        async with httpx.AsyncClient(timeout=10) as plain:  # plaintext HTTP to a TLS port
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://127.0.0.1:{port}/v2/health/live")


async def test_uvicorn_mutual_tls(certs: Certs) -> None:
    tls = load_tls(certs.server_cert, certs.server_key, certs.ca)
    assert tls is not None
    async with https_server(tls) as port:
        url = f"https://127.0.0.1:{port}"
        reply = await get_live(url, client_context(certs, pair="client"))
        assert reply.status_code == 200
        for refused in ("", "stranger"):
            with pytest.raises(httpx.TransportError):
                await get_live(url, client_context(certs, pair=refused))

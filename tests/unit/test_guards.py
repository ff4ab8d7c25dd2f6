"""The auth guards: AuthMiddleware over a tiny Starlette app (httpx.ASGITransport), and
GrpcAuthInterceptor on a real grpc.aio server on 127.0.0.1:0 with a generic handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.auth import AccessPolicy, access_policy
from gateway.guards import AuthMiddleware, GrpcAuthInterceptor

USER, ROOT = "user-key", "root-key"
NO, WRONG = None, "not-a-key"
OK, UNAUTH, FORBID = 200, 401, 403


def policy(health: str = "infer", metrics: str = "infer") -> AccessPolicy:
    return access_policy(infer_keys=USER, admin_keys=ROOT, health=health, metrics=metrics)


# ---- HTTP ----------------------------------------------------------------------------------

PATHS = {
    "infer": ("POST", "/v2/models/digits/infer"),
    "metadata": ("GET", "/v2/models/digits"),
    "server": ("GET", "/v2"),
    "docs": ("GET", "/openapi.json"),
    "live": ("GET", "/v2/health/live"),
    "metrics": ("GET", "/metrics"),
    "repository": ("POST", "/v2/repository/index"),
    "management": ("GET", "/admin/runners"),
    "unknown": ("GET", "/v2/nothing/here"),  # unrouted: decided before routing, 404 only if let in
}


def make_app(p: AccessPolicy, calls: list[str] | None = None) -> Starlette:
    """Every PATHS route but "unknown", each recording its path in `calls` when reached."""

    async def reached(request: Request) -> PlainTextResponse:
        if calls is not None:
            calls.append(request.url.path)
        return PlainTextResponse("reached")

    routes = [
        Route(path, reached, methods=[method])
        for name, (method, path) in PATHS.items()
        if name != "unknown"
    ]
    app = Starlette(routes=routes)
    app.add_middleware(AuthMiddleware, policy=p)
    return app


async def status_of(
    p: AccessPolicy, route: str, key: str | None, calls: list[str] | None = None
) -> int:
    method, path = PATHS[route]
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    transport = httpx.ASGITransport(app=make_app(p, calls))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        reply = await client.request(method, path, headers=headers)
    return reply.status_code


# (route, key, status with defaults: health and metrics need infer)
MATRIX = [
    *[(r, NO, UNAUTH) for r in PATHS],
    *[(r, WRONG, UNAUTH) for r in PATHS],
    *[(r, USER, OK) for r in ("infer", "metadata", "server", "docs", "live", "metrics")],
    *[(r, USER, FORBID) for r in ("repository", "management", "unknown")],
    *[(r, ROOT, OK) for r in PATHS if r != "unknown"],
    ("unknown", ROOT, 404),
]


@pytest.mark.parametrize(("route", "key", "status"), MATRIX)
async def test_http_matrix(route: str, key: str | None, status: int) -> None:
    calls: list[str] = []
    assert await status_of(policy(), route, key, calls) == status
    assert calls == ([PATHS[route][1]] if status == OK else [])  # refused: the app never ran


@pytest.mark.parametrize(
    ("health", "metrics", "route", "key", "status"),
    [
        ("open", "infer", "live", NO, OK),
        ("open", "infer", "live", WRONG, OK),
        ("open", "infer", "metrics", NO, UNAUTH),
        ("infer", "open", "metrics", NO, OK),
        ("infer", "open", "live", NO, UNAUTH),
        ("infer", "admin", "metrics", USER, FORBID),
        ("infer", "admin", "metrics", ROOT, OK),
        ("infer", "admin", "metrics", NO, UNAUTH),
    ],
)
async def test_http_health_and_metrics_scopes(
    health: str, metrics: str, route: str, key: str | None, status: int
) -> None:
    assert await status_of(policy(health, metrics), route, key) == status


async def test_refusals_carry_the_v2_error_body_and_a_bearer_challenge() -> None:
    transport = httpx.ASGITransport(app=make_app(policy()))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        missing = await client.get("/v2")
        unknown = await client.get("/v2", headers={"Authorization": "Bearer nope"})
        forbidden = await client.post(
            "/v2/repository/index", headers={"authorization": f"bearer {USER}"}
        )
        basic = await client.get("/v2", headers={"Authorization": f"Basic {ROOT}"})
    for reply in (missing, unknown, forbidden, basic):
        assert reply.headers["content-type"] == "application/json"
        assert set(reply.json()) == {"error"}
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert "nope" not in reply.text and USER not in reply.text and ROOT not in reply.text
    assert (missing.status_code, unknown.status_code, basic.status_code) == (401, 401, 401)
    assert "invalid_token" in unknown.headers["www-authenticate"]
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope", scope="admin"' in forbidden.headers["www-authenticate"]
    assert "admin" in forbidden.json()["error"]


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        seen.append(scope["type"])

    async def receive() -> dict:  # type: ignore[type-arg]
        return {}

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        raise AssertionError("the guard must not answer a lifespan scope")

    await AuthMiddleware(inner, policy=policy())({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]


# ---- gRPC ----------------------------------------------------------------------------------

V2 = "inference.GRPCInferenceService"
METHODS = {
    "infer": f"/{V2}/ModelInfer",
    "live": f"/{V2}/ServerLive",
    "health": "/grpc.health.v1.Health/Check",
    "metadata": f"/{V2}/ModelMetadata",
    "repository": f"/{V2}/RepositoryIndex",
    "load": f"/{V2}/RepositoryModelLoad",
    "unknown": f"/{V2}/NotAMethod",  # admin; UNIMPLEMENTED once let in
}
ARITIES = {"unary_unary", "unary_stream", "stream_unary", "stream_stream"}


async def echo(request: bytes, _: grpc.aio.ServicerContext) -> bytes:
    return b"echo:" + request


async def echo_stream_in(requests: AsyncIterator[bytes], _: grpc.aio.ServicerContext) -> bytes:
    return b"echo:" + b"".join([r async for r in requests])


async def echo_stream_out(request: bytes, _: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"echo:" + request


async def echo_both(
    requests: AsyncIterator[bytes], _: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for r in requests:
        yield b"echo:" + r


def handlers() -> list[grpc.GenericRpcHandler]:
    """Raw-bytes methods (no serializers) for every name in METHODS, and one per arity."""
    unary = grpc.unary_unary_rpc_method_handler(echo)
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for name, full in METHODS.items():
        if name != "unknown":
            service, method = full[1:].split("/")
            by_service.setdefault(service, {})[method] = unary
    by_service["admin.Streams"] = {
        "unary_unary": unary,
        "unary_stream": grpc.unary_stream_rpc_method_handler(echo_stream_out),
        "stream_unary": grpc.stream_unary_rpc_method_handler(echo_stream_in),
        "stream_stream": grpc.stream_stream_rpc_method_handler(echo_both),
    }
    return [grpc.method_handlers_generic_handler(s, m) for s, m in by_service.items()]


StartGuarded = Callable[[AccessPolicy], Awaitable[grpc.aio.Channel]]


@pytest.fixture
async def grpc_for() -> AsyncIterator[StartGuarded]:
    """`await grpc_for(policy)`: a channel to a fresh server guarded by `policy`."""
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []

    async def start(p: AccessPolicy) -> grpc.aio.Channel:
        server = grpc.aio.server(interceptors=[GrpcAuthInterceptor(p)])
        server.add_generic_rpc_handlers(handlers())
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
        return channels[-1]

    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(0)


def metadata(key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),) if key is not None else ()


async def code_of(channel: grpc.aio.Channel, method: str, key: str | None) -> grpc.StatusCode:
    try:
        reply = await channel.unary_unary(method)(b"hi", metadata=metadata(key), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    assert reply == b"echo:hi"
    return grpc.StatusCode.OK


G_OK, G_UNAUTH, G_FORBID = (
    grpc.StatusCode.OK,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
)
GRPC_MATRIX = [
    *[(m, NO, G_UNAUTH) for m in METHODS],
    *[(m, WRONG, G_UNAUTH) for m in METHODS],
    *[(m, USER, G_OK) for m in ("infer", "live", "health", "metadata")],
    *[(m, USER, G_FORBID) for m in ("repository", "load", "unknown")],
    *[(m, ROOT, G_OK) for m in METHODS if m != "unknown"],
    ("unknown", ROOT, grpc.StatusCode.UNIMPLEMENTED),
]


@pytest.mark.parametrize(("method", "key", "code"), GRPC_MATRIX)
async def test_grpc_matrix(
    grpc_for: StartGuarded, method: str, key: str | None, code: object
) -> None:
    channel = await grpc_for(policy())
    assert await code_of(channel, METHODS[method], key) == code


async def test_grpc_open_health(grpc_for: StartGuarded) -> None:
    channel = await grpc_for(policy(health="open"))
    for name in ("live", "health"):
        assert await code_of(channel, METHODS[name], NO) == G_OK
    assert await code_of(channel, METHODS["infer"], NO) == G_UNAUTH


async def test_grpc_refusal_details_name_no_key(grpc_for: StartGuarded) -> None:
    channel = await grpc_for(policy())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(METHODS["load"])(b"", metadata=metadata(USER), timeout=10)
    assert "admin" in (caught.value.details() or "")
    assert USER not in (caught.value.details() or "")


async def _call(channel: grpc.aio.Channel, arity: str, key: str | None) -> list[bytes]:
    method, md = f"/admin.Streams/{arity}", metadata(key)
    if arity == "unary_unary":
        return [await channel.unary_unary(method)(b"x", metadata=md, timeout=10)]
    if arity == "unary_stream":
        return [r async for r in channel.unary_stream(method)(b"x", metadata=md, timeout=10)]
    if arity == "stream_unary":
        return [await channel.stream_unary(method)(iter([b"x"]), metadata=md, timeout=10)]
    call = channel.stream_stream(method)(iter([b"x"]), metadata=md, timeout=10)
    return [r async for r in call]


@pytest.mark.parametrize("arity", sorted(ARITIES))
@pytest.mark.parametrize(
    ("key", "code"), [(NO, G_UNAUTH), (WRONG, G_UNAUTH), (USER, G_FORBID), (ROOT, G_OK)]
)
async def test_grpc_every_arity_is_refused_or_served(
    grpc_for: StartGuarded, arity: str, key: str | None, code: grpc.StatusCode
) -> None:
    channel = await grpc_for(policy())
    if code is G_OK:
        assert await _call(channel, arity, key) == [b"echo:x"]
        return
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(channel, arity, key)
    assert caught.value.code() == code


async def test_grpc_a_refused_streaming_client_that_never_sends_is_answered(
    grpc_for: StartGuarded,
) -> None:
    """The refusal does not wait for the client's messages: a stream that sends nothing
    and never half-closes still gets UNAUTHENTICATED."""
    channel = await grpc_for(policy())

    async def silent() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    call = channel.stream_stream("/admin.Streams/stream_stream")(silent(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == G_UNAUTH

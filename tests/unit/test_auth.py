"""API keys: loading (file and lists), matching, the route -> scope tables, the decision."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.auth import (
    AccessPolicy,
    AuthConfigError,
    KeyRing,
    Verdict,
    access_policy,
    bearer,
    keys_from_file,
    keys_from_strings,
    load_keys,
    scope_named,
)
from gateway.scopes import ADMIN, HEALTH, INFER, METRICS, Scope, grpc_route_kind, http_route_kind

SECRET = "s3cr3t-Key_with.punct~"


def key_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys"
    path.write_text(text)
    path.chmod(0o600)
    return path


# ---- loading -------------------------------------------------------------------------------


def test_file_with_comments_blank_lines_and_both_scopes(tmp_path: Path) -> None:
    path = key_file(
        tmp_path,
        "# servegate keys\n\ninfer:alpha\n  admin : root-key  \n\t\n# admin:commented\n"
        "infer:with:colons\r\ninfer:alpha\n",
    )
    keys = keys_from_file(path)
    assert {k: s for k, (s, _) in keys.items()} == {
        "alpha": Scope.INFER,
        "root-key": Scope.ADMIN,
        "with:colons": Scope.INFER,
    }
    assert keys["root-key"][1].endswith("line 4")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("alpha", "expected 'infer:<key>' or 'admin:<key>'"),
        ("root:" + SECRET, "expected 'infer:<key>' or 'admin:<key>'"),
        (SECRET + ":" + SECRET, "expected 'infer:<key>' or 'admin:<key>'"),
        ("admin:", "the key is empty"),
        ("infer:" + SECRET + " more", "contains whitespace"),
        ("infer:" + SECRET + "\tmore", "contains whitespace"),
        ("infer:" + SECRET + "é", "outside printable ASCII"),
    ],
)
def test_a_malformed_line_fails_naming_its_number_never_the_key(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = key_file(tmp_path, f"# keys\ninfer:fine-key\n\n{line}\nadmin:other\n")
    with pytest.raises(AuthConfigError) as caught:
        keys_from_file(path)
    message = str(caught.value)
    assert f"{path} line 4" in message
    assert reason in message
    assert SECRET not in message and "more" not in message


def test_one_key_in_two_scopes_is_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path, f"infer:{SECRET}\nadmin:{SECRET}\n")
    with pytest.raises(AuthConfigError, match=r"line 2.*also configured as infer.*line 1") as e:
        keys_from_file(path)
    assert SECRET not in str(e.value)
    with pytest.raises(AuthConfigError, match="admin key list item 1"):
        load_keys(infer=SECRET, admin=SECRET)


def test_a_missing_file_fails_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match=r"keys-nowhere: cannot read it"):
        keys_from_file(tmp_path / "keys-nowhere")


def test_a_world_readable_file_is_loaded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = key_file(tmp_path, "infer:alpha\n")
    path.chmod(0o644)
    assert "alpha" in keys_from_file(path)
    assert "readable by every user" in caplog.text


def test_lists_split_on_commas_strip_spaces_and_skip_empty_items() -> None:
    keys = keys_from_strings(infer=" a1 , b2,,", admin="root ,")
    assert {k: s for k, (s, _) in keys.items()} == {
        "a1": Scope.INFER,
        "b2": Scope.INFER,
        "root": Scope.ADMIN,
    }


def test_a_list_item_with_inner_space_fails_naming_the_item() -> None:
    with pytest.raises(AuthConfigError, match=r"admin key list item 2: .*whitespace") as e:
        keys_from_strings(admin="root, two words")
    assert "two" not in str(e.value)


def test_file_and_lists_merge(tmp_path: Path) -> None:
    ring = load_keys(key_file(tmp_path, "infer:from-file\n"), infer="from-env", admin="boss")
    assert len(ring) == 3
    assert ring.scope_of(b"from-file") is Scope.INFER
    assert ring.scope_of(b"boss") is Scope.ADMIN


def test_no_keys_means_auth_off() -> None:
    assert not access_policy().enabled
    assert not access_policy(infer_keys=" , ").enabled
    assert access_policy(admin_keys="x").enabled


def test_scope_names() -> None:
    assert [scope_named(n) for n in ("open", "infer", "ADMIN")] == list(Scope)
    with pytest.raises(AuthConfigError, match="unknown scope 'public'"):
        scope_named("public")


# ---- matching ------------------------------------------------------------------------------


def test_the_ring_never_shows_its_keys() -> None:
    ring = KeyRing({SECRET: Scope.ADMIN})
    assert SECRET not in repr(ring)
    assert SECRET not in repr(AccessPolicy(ring))


def test_only_the_whole_key_matches() -> None:
    ring = KeyRing({"abcdef": Scope.INFER, "root": Scope.ADMIN})
    assert ring.scope_of(b"abcdef") is Scope.INFER
    assert ring.scope_of(b"root") is Scope.ADMIN
    for near in (b"abcde", b"abcdefg", b"ABCDEF", b"", b"abcdef ", b"roo"):
        assert ring.scope_of(near) is None


@pytest.fixture
def compare_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Records the argument lengths of every hmac.compare_digest call (the stdlib, not ours)."""
    calls: list[tuple[int, int]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    return calls


@pytest.mark.parametrize("presented", [b"k0", b"k3-longer-key", b"k7", b"nobody", b"x" * 500])
def test_every_key_is_compared_with_equal_lengths_whichever_matches(
    compare_calls: list[tuple[int, int]], presented: bytes
) -> None:
    keys = {f"k{i}": Scope.INFER for i in range(8)} | {"k3-longer-key": Scope.ADMIN}
    ring = KeyRing(keys)
    ring.scope_of(presented)
    assert len(compare_calls) == len(keys)  # no early exit on a match
    assert set(compare_calls) == {(32, 32)}  # digests: a key's length does not show


# ---- the bearer header ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc", b"abc"),
        ("bearer abc", b"abc"),
        (b"BEARER   abc  ", b"abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer(value: str | bytes | None, token: bytes | None) -> None:
    assert bearer(value) == token


# ---- the route tables ----------------------------------------------------------------------

HTTP_KINDS = {
    "/v2": INFER,
    "/v2/": INFER,
    "/v2/health/live": HEALTH,
    "/v2/health/ready": HEALTH,
    "/metrics": METRICS,
    "/docs": INFER,
    "/openapi.json": INFER,
    "/redoc": INFER,
    "/v2/models/digits": INFER,
    "/v2/models/digits@jax/infer": INFER,
    "/v2/models/digits/ready": INFER,
    "/v2/models/digits/config": INFER,
    "/v2/models/digits/stats": INFER,
    "/v2/models/stats": INFER,
    "/v2/models/digits/versions/1": INFER,
    "/v2/models/digits/versions/1/infer": INFER,
    "/v2/models/digits/versions/1/ready/": INFER,
    "/v1/models/digits": INFER,
    "/v1/models/digits:predict": INFER,
    "/v1/models/digits/metadata": INFER,
    "/v1/models/digits/versions/1:classify": INFER,
    "/v1/models/digits/labels/stable:regress": INFER,
    "/predictions/digits": INFER,
    "/predictions/digits/1.0": INFER,
    "/ping": HEALTH,
    # everything that changes or reveals the system, and anything unknown
    "/v2/repository/index": ADMIN,
    "/v2/repository/models/digits/load": ADMIN,
    "/v2/repository/models/digits/unload": ADMIN,
    "/admin/runners": ADMIN,
    "/models": ADMIN,
    "/v2/models/digits/trace/setting": ADMIN,
    "/v2/models/digits/versions/1/load": ADMIN,
    "/v2/models/digits/versions": ADMIN,
    "/v2/models//infer": ADMIN,
    "/v2/models": ADMIN,
    "/v2/logging": ADMIN,
    "/v1/models/digits/versions/1/metadata:predict": ADMIN,
    "/v1/models/:predict": ADMIN,
    "/predictions/digits/1/extra": ADMIN,
    "/predictions/": ADMIN,
    "/V2/health/live": ADMIN,
    "//v2/health/live": ADMIN,
    "/": ADMIN,
    "": ADMIN,
}


@pytest.mark.parametrize(("path", "kind"), HTTP_KINDS.items())
def test_http_route_kind(path: str, kind: str) -> None:
    assert http_route_kind(path) == kind


V2 = "/inference.GRPCInferenceService/"
GRPC_KINDS = {
    V2 + "ServerLive": HEALTH,
    V2 + "ServerReady": HEALTH,
    "/grpc.health.v1.Health/Check": HEALTH,
    "/grpc.health.v1.Health/Watch": HEALTH,
    "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Ping": HEALTH,
    **dict.fromkeys(
        (V2 + "ModelInfer", V2 + "ModelReady", V2 + "ServerMetadata", V2 + "ModelMetadata"),
        INFER,
    ),
    **dict.fromkeys((V2 + "ModelConfig", V2 + "ModelStatistics", V2 + "ModelStreamInfer"), INFER),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": INFER,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": INFER,
    "/tensorflow.serving.PredictionService/Predict": INFER,
    "/tensorflow.serving.PredictionService/GetModelMetadata": INFER,
    "/tensorflow.serving.ModelService/GetModelStatus": INFER,
    "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions": INFER,
    V2 + "RepositoryIndex": ADMIN,
    V2 + "RepositoryModelLoad": ADMIN,
    V2 + "RepositoryModelUnload": ADMIN,
    V2 + "CudaSharedMemoryRegister": ADMIN,
    "/tensorflow.serving.ModelService/HandleReloadConfigRequest": ADMIN,
    "/org.pytorch.serve.grpc.management.ManagementAPIsService/RegisterModel": ADMIN,
    "/org.pytorch.serve.grpc.management.ManagementAPIsService/DescribeModel": ADMIN,
    "/inference.GRPCInferenceService/modelinfer": ADMIN,
    "/grpc.health.v1.Healthy/Check": ADMIN,
    "/anything.Else/Method": ADMIN,
}


@pytest.mark.parametrize(("method", "kind"), GRPC_KINDS.items())
def test_grpc_route_kind(method: str, kind: str) -> None:
    assert grpc_route_kind(method) == kind


# ---- the decision --------------------------------------------------------------------------


def policy(health: str = "infer", metrics: str = "infer") -> AccessPolicy:
    return access_policy(infer_keys="user", admin_keys="root", health=health, metrics=metrics)


@pytest.mark.parametrize(
    ("token", "required", "verdict"),
    [
        (None, Scope.INFER, Verdict.MISSING),
        (None, Scope.ADMIN, Verdict.MISSING),
        (b"wrong", Scope.INFER, Verdict.UNKNOWN),
        (b"wrong", Scope.ADMIN, Verdict.UNKNOWN),
        (b"user", Scope.INFER, Verdict.ALLOW),
        (b"user", Scope.ADMIN, Verdict.FORBIDDEN),
        (b"root", Scope.INFER, Verdict.ALLOW),
        (b"root", Scope.ADMIN, Verdict.ALLOW),
        (None, Scope.OPEN, Verdict.ALLOW),
        (b"wrong", Scope.OPEN, Verdict.ALLOW),
    ],
)
def test_decide(token: bytes | None, required: Scope, verdict: Verdict) -> None:
    assert policy().decide(required, token) is verdict


def test_health_and_metrics_scopes_are_configurable() -> None:
    default = policy()
    assert default.http_scope("/v2/health/ready") is Scope.INFER
    assert default.grpc_scope("/grpc.health.v1.Health/Check") is Scope.INFER
    assert default.http_scope("/metrics") is Scope.INFER
    custom = policy(health="open", metrics="admin")
    assert custom.http_scope("/v2/health/live") is Scope.OPEN
    assert custom.grpc_scope(V2 + "ServerReady") is Scope.OPEN
    assert custom.grpc_scope("/grpc.health.v1.Health/Watch") is Scope.OPEN
    assert custom.http_scope("/metrics") is Scope.ADMIN
    assert custom.http_scope("/v2/models/m/ready") is Scope.INFER  # model readiness: not health
    assert policy(metrics="open").http_scope("/metrics") is Scope.OPEN

"""Front door: the scope each route requires, by HTTP path or gRPC method full name.

The tables whitelist infer routes (v2, and the TF Serving and TorchServe inference
APIs, on both protocols); anything not on them needs admin, so a route added later is
closed until someone opens it here. Health and metrics are kinds of their own, because
the AccessPolicy (auth.py) lets the operator give them another scope.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Scope(enum.IntEnum):
    """What a route requires and what a key grants; a key may use any route at or below it."""

    OPEN = 0
    INFER = 1
    ADMIN = 2


INFER, HEALTH, METRICS, ADMIN = "infer", "health", "metrics", "admin"
"""Route kinds. The policy maps each to a Scope (health and metrics are configurable)."""

HTTP_ROUTES: Mapping[str, str] = {
    "/v2": INFER,
    "/v2/health/live": HEALTH,
    "/v2/health/ready": HEALTH,
    "/v2/models/stats": INFER,
    "/metrics": METRICS,
    "/docs": INFER,
    "/docs/oauth2-redirect": INFER,
    "/redoc": INFER,
    "/openapi.json": INFER,
    "/ping": HEALTH,  # TorchServe's inference API health
}
"""Exact paths. Model paths are matched by shape in `http_route_kind`; the rest is admin."""

_V2_MODEL_TAILS = {(), ("ready",), ("infer",), ("config",), ("stats",)}
_TFS_VERBS = (":predict", ":classify", ":regress")


def _v2_model(parts: list[str]) -> bool:
    # parts after /v2/models/: {m}[/versions/{v}][/ready|/infer|/config|/stats]
    tail = parts[1:]
    if tail[:1] == ["versions"] and len(tail) >= 2 and tail[1]:
        tail = tail[2:]
    return bool(parts[0]) and tuple(tail) in _V2_MODEL_TAILS


def _tfs_model(parts: list[str]) -> bool:
    # TF Serving REST, parts after /v1/models/: {m}[/versions/{v}|/labels/{l}][:verb|/metadata]
    last = parts[-1]
    for verb in _TFS_VERBS:
        if last.endswith(verb):
            parts = [*parts[:-1], last[: -len(verb)]]
            break
    else:
        if len(parts) > 1 and last == "metadata":
            parts = parts[:-1]
    if len(parts) == 3 and parts[1] in ("versions", "labels") and parts[2]:
        parts = parts[:1]
    return len(parts) == 1 and bool(parts[0])


def http_route_kind(path: str) -> str:
    """The kind of an HTTP path: a v2, TF Serving REST or TorchServe inference route, or admin."""
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]  # the router only redirects these
    kind = HTTP_ROUTES.get(path)
    if kind is not None:
        return kind
    parts = path.split("/")
    if len(parts) >= 4 and parts[1] == "v2" and parts[2] == "models":
        return INFER if _v2_model(parts[3:]) else ADMIN
    if len(parts) >= 4 and parts[1] == "v1" and parts[2] == "models":
        return INFER if _tfs_model(parts[3:]) else ADMIN
    if len(parts) in (3, 4) and parts[1] in ("predictions", "explanations") and all(parts[2:]):
        return INFER
    return ADMIN


_V2 = "/inference.GRPCInferenceService/"
_TFS = "/tensorflow.serving.PredictionService/"
_TS = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/"

GRPC_METHODS: Mapping[str, str] = {
    **dict.fromkeys((_V2 + "ServerLive", _V2 + "ServerReady", _TS + "Ping"), HEALTH),
    **dict.fromkeys(
        [_V2 + m for m in ("ModelReady", "ServerMetadata", "ModelMetadata", "ModelConfig")]
        + [_V2 + m for m in ("ModelInfer", "ModelStreamInfer", "ModelStatistics")]
        + [_TFS + m for m in ("Predict", "Classify", "Regress", "MultiInference")]
        + [_TFS + "GetModelMetadata", "/tensorflow.serving.ModelService/GetModelStatus"]
        + [_TS + m for m in ("Predictions", "StreamPredictions", "StreamPredictions2")],
        INFER,
    ),
}
"""Full method names. Everything else (repository, TF Serving's HandleReloadConfigRequest,
TorchServe's ManagementAPIsService, unknown methods) is admin."""

GRPC_SERVICES: Mapping[str, str] = {
    "/grpc.health.v1.Health": HEALTH,
    "/grpc.reflection.v1alpha.ServerReflection": INFER,
    "/grpc.reflection.v1.ServerReflection": INFER,
}
"""Whole services, keyed by the method name up to its last '/'."""


def grpc_route_kind(method: str) -> str:
    """The kind of a gRPC method full name, e.g. `/inference.GRPCInferenceService/ModelInfer`."""
    kind = GRPC_METHODS.get(method)
    if kind is None:
        kind = GRPC_SERVICES.get(method.rpartition("/")[0], ADMIN)
    return kind

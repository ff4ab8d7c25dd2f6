"""Leaf: the one error tree. Each class carries its HTTP status, gRPC code and retry hint.

    GatewayError                 500  INTERNAL
    ├── BadRequest               400  INVALID_ARGUMENT
    ├── Unauthorized             401  UNAUTHENTICATED     (no key, or an unknown one)
    ├── Forbidden                403  PERMISSION_DENIED   (a key without the scope)
    ├── ModelNotFound            404  NOT_FOUND
    ├── RequestTimeout           408  DEADLINE_EXCEEDED   (a client too slow to send)
    ├── PayloadTooLarge          413  RESOURCE_EXHAUSTED  (grpc-retry-pushback-ms -1)
    ├── Overloaded               429  RESOURCE_EXHAUSTED  (retry_after)
    ├── Unavailable              503  UNAVAILABLE         (retry_after)
    │   └── Unreachable          503  UNAVAILABLE         (never reached a runner)
    └── DeadlineExceeded         504  DEADLINE_EXCEEDED

The front ends (api/http.py, api/grpc.py) map these once; backends map upstream gRPC
codes into the same tree (backends/base.py).
"""

from __future__ import annotations

import grpc


class GatewayError(Exception):
    """Base of every error the gateway answers with; unknown errors become this."""

    http_status: int = 500
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadRequest(GatewayError):
    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthorized(GatewayError):
    """No API key, or one the gateway does not know (gateway/auth.py)."""

    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class Forbidden(GatewayError):
    """A known API key whose scope does not cover the route (gateway/auth.py)."""

    http_status = 403
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class ModelNotFound(GatewayError):
    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class RequestTimeout(GatewayError):
    http_status = 408
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class PayloadTooLarge(GatewayError):
    http_status = 413
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Overloaded(GatewayError):
    http_status = 429
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(GatewayError):
    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(GatewayError):
    http_status = 504
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unreachable(Unavailable):
    """The call never reached a runner (refused, nothing listening): it is safe to send
    it to another replica of the same variant."""

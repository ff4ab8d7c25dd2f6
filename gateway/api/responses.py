"""API: the JSON answers of the HTTP front end, errors included (v2 shape, Retry-After)."""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import Response

from gateway.errors import GatewayError
from gateway.protocol import v2_http

JSON = "application/json"


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(v2_http.dumps(doc), status_code=status, media_type=JSON, headers=headers)


def error_response(exc: GatewayError) -> Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return json_response({"error": exc.message}, exc.http_status, headers)

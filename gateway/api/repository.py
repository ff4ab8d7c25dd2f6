"""API: the model repository extension over HTTP (index, load, unload).

Admin scope when keys are set (guards.py). The bodies may carry only what the extension
defines: load reads model.yaml and the version folders from the repository itself, so a
`config` or `file:` parameter is refused rather than ignored.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.bodies import read_body
from gateway.api.responses import json_response
from gateway.errors import BadRequest
from gateway.lifecycle import RepositoryControl
from gateway.protocol import v2_http


def _repository_parameters(doc: Any) -> None:
    """A load/unload body: only what the repository extension defines, nothing we ignore."""
    if doc is None:
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters", {}), dict):
        raise BadRequest("the body must be an object, with an optional 'parameters' object")
    unsupported = sorted(set(doc.get("parameters", {})) - {"unload_dependents"})
    if unsupported:
        raise BadRequest(
            f"parameters {unsupported} are not supported: load reads model.yaml and the "
            "version folders from the repository; change them there"
        )


def repository_router(lifecycle: RepositoryControl, body_timeout_s: float) -> APIRouter:
    """The repository extension's routes over `lifecycle`."""
    router = APIRouter(tags=["repository"])

    @router.post("/v2/repository/index")
    async def repository_index(request: Request) -> Response:
        """Every model folder of the repository, and whether it is loaded and ready."""
        body = await read_body(request, 1 << 16, body_timeout_s)
        doc = v2_http.loads_object(body) if body.strip() else {}
        ready = doc.get("ready", False)
        if not isinstance(ready, bool):
            raise BadRequest("'ready' must be a boolean")
        return json_response(await lifecycle.index(ready_only=ready))

    @router.post("/v2/repository/models/{model}/load")
    async def repository_load(model: str, request: Request) -> Response:
        """Reads the model's folder again and swaps it in, losing no request."""
        body = await read_body(request, 1 << 16, body_timeout_s)
        _repository_parameters(v2_http.loads_object(body) if body.strip() else None)
        await lifecycle.load(model)
        return json_response({})

    @router.post("/v2/repository/models/{model}/unload")
    async def repository_unload(model: str, request: Request) -> Response:
        """Stops serving the model once the requests in flight are answered."""
        body = await read_body(request, 1 << 16, body_timeout_s)
        _repository_parameters(v2_http.loads_object(body) if body.strip() else None)
        await lifecycle.unload(model)
        return json_response({})

    return router

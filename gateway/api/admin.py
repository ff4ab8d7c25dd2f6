"""API: the admin routes (admin scope when keys are set): runners, routing, faults.

`PUT /admin/models/{m}/routing` changes a model's routing policy at run time (the body is
model.yaml's `routing:` as JSON); `PUT|DELETE /admin/models/{m}/variants/{v}/fault` injects
or clears a fault (a delay and/or an abort for a share of calls, as Envoy's fault filter),
for testing failover and hedging on a live gateway.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.bodies import read_body
from gateway.api.responses import json_response
from gateway.dataplane import DataPlane
from gateway.lifecycle import Relay
from gateway.protocol import v2_http

ADMIN_BODY_BYTES = 1 << 16


def admin_router(
    dataplane: DataPlane, body_timeout_s: float, relay: Relay | None = None
) -> APIRouter:
    """The admin routes over `dataplane`; a fleet worker's changes go through `relay`, which
    has every worker (this one included) make them before it returns."""
    router = APIRouter(prefix="/admin", tags=["admin"])

    async def body(request: Request) -> dict[str, object]:
        return v2_http.loads_object(await read_body(request, ADMIN_BODY_BYTES, body_timeout_s))

    @router.get("/runners")
    async def runners() -> Response:
        """The local runners `servegate up` supervises: state, restarts, pid, standby."""
        return json_response({"runners": dataplane.runners()})

    @router.get("/models/{model}/routing")
    async def routing(model: str) -> Response:
        """The routing policy in force, and the faults injected."""
        return json_response(dataplane.routing(model))

    @router.put("/models/{model}/routing")
    async def set_routing(model: str, request: Request) -> Response:
        """Routes the model's requests by this policy from now on (no restart)."""
        doc = await body(request)
        if relay is not None:
            await relay.ask("routing", model=model, doc=doc)
            return json_response({"routing": dataplane.routing(model)["routing"]})
        config = dataplane.set_routing(model, doc)
        return json_response({"routing": config.model_dump()})

    @router.put("/models/{model}/variants/{variant}/fault")
    async def set_fault(model: str, variant: str, request: Request) -> Response:
        """Injects a fault into the variant's calls: delay_ms / delay_percent and/or
        abort_status / abort_percent."""
        await _set_fault(model, variant, await body(request))
        return json_response(dataplane.routing(model))

    @router.delete("/models/{model}/variants/{variant}/fault")
    async def clear_fault(model: str, variant: str) -> Response:
        await _set_fault(model, variant, None)
        return json_response(dataplane.routing(model))

    async def _set_fault(model: str, variant: str, doc: object) -> None:
        if relay is not None:
            await relay.ask("fault", model=model, variant=variant, doc=doc)
        else:
            dataplane.set_fault(model, variant, doc)

    return router

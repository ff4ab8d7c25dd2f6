"""API: TF Serving's REST API and TorchServe's inference API, as routes over the DataPlane.

Front ends that only translate (protocol/compat_tfserving.py, compat_torchserve.py) to
the gateway's one path, as the v2 route does: admission before the body is read, then
DataPlane.infer (signature check, variant, batching, deadline), then the answer in the
caller's own format. They reach any variant of a model, not only the framework whose
API they copy (pins: compat_targets.py). TF Serving's errors are `{"error": ...}` with
the gateway's statuses (the app's handler, as for v2); TorchServe's are its own
`{"code", "type", "message"}`.
"""

from __future__ import annotations

import logging
import math

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.admission import Ticket
from gateway.api.bodies import declared_length, read_body
from gateway.api.compat_targets import model_status, one_pin
from gateway.dataplane import DataPlane
from gateway.errors import GatewayError
from gateway.protocol import compat_tfserving, compat_tfserving_meta, compat_torchserve
from gateway.protocol.grpc_errors import internal
from gateway.router.selection import PIN_HEADER
from gateway.tensors import InferRequest

log = logging.getLogger(__name__)

JSON = "application/json"
TFS = "/v1/models/{model}"
TFS_VERSIONS = (TFS, TFS + "/versions/{version}", TFS + "/labels/{label}")


def router(dataplane: DataPlane, *, max_body_bytes: int, body_timeout_s: float = 30.0) -> APIRouter:
    """The TF Serving REST and TorchServe inference routes for `dataplane`.

    `max_body_bytes` and `body_timeout_s` bound bodies as on the v2 routes (413, 408).
    """
    r = APIRouter()

    async def body_of(
        request: Request, model: str, version: str, pin: str | None
    ) -> tuple[bytes, Ticket]:
        """Admits the request (404, 413, 429 before its body is read), then reads it."""
        declared = declared_length(request, max_body_bytes)
        ticket = dataplane.admit(model, version, pin, declared or 0, protocol="http")
        try:
            body = await read_body(request, max_body_bytes, body_timeout_s)
            if declared is None:  # admitted with 0 bytes, now that they are known
                ticket.resize(len(body), retry_after=1.0)
        except BaseException:
            ticket.release()
            raise
        return body, ticket

    # ---- TF Serving ---------------------------------------------------------------------

    async def tfs_status(
        model: str, request: Request, version: str = "", label: str = ""
    ) -> Response:
        """TF Serving's model status: every version's state (AVAILABLE when ready)."""
        pin = one_pin(request.headers.get(PIN_HEADER), label)
        states = await model_status(dataplane, model, version, pin)
        return _json(compat_tfserving_meta.status_json(states))

    async def tfs_metadata(
        model: str, request: Request, version: str = "", label: str = ""
    ) -> Response:
        """TF Serving's model metadata: the model.yaml signature as `serving_default`."""
        target = dataplane.resolve(model, version, one_pin(request.headers.get(PIN_HEADER), label))
        doc = compat_tfserving_meta.metadata_json(model, target.version, target.model.signature)
        return _json(doc)

    async def tfs_predict(
        model: str, request: Request, version: str = "", label: str = ""
    ) -> Response:
        """TF Serving's Predict: row (`instances`) or columnar (`inputs`) JSON."""
        pin = one_pin(request.headers.get(PIN_HEADER), label)
        body, ticket = await body_of(request, model, version, pin)
        try:
            signature = dataplane.resolve(model, version, pin).model.signature
            req, fmt = compat_tfserving.decode_predict(
                body, signature, model_name=model, model_version=version
            )
            response = await dataplane.infer(
                req, pin=pin, protocol="http", ticket=ticket, headers=request.headers
            )
        finally:
            ticket.release()
        return Response(compat_tfserving.encode_predict(response, fmt), media_type=JSON)

    async def tfs_unsupported(model: str, request: Request) -> Response:
        verb = request.url.path.rpartition(":")[2]
        raise compat_tfserving.Unimplemented(
            f"'{verb}' is not served by servegate: use ':predict' (TF Serving's Predict API)"
        )

    for path in TFS_VERSIONS:
        r.add_api_route(path, tfs_status, methods=["GET"], tags=["tfserving"])
        r.add_api_route(path + "/metadata", tfs_metadata, methods=["GET"], tags=["tfserving"])
        r.add_api_route(path + ":predict", tfs_predict, methods=["POST"], tags=["tfserving"])
        for verb in (":classify", ":regress"):
            r.add_api_route(path + verb, tfs_unsupported, methods=["POST"], tags=["tfserving"])

    # ---- TorchServe ---------------------------------------------------------------------

    async def ts_ping() -> Response:
        """TorchServe's health: Healthy (200) when the gateway is ready, else 500."""
        ok = await dataplane.server_ready()
        return Response(compat_torchserve.health(ok), 200 if ok else 500, media_type=JSON)

    async def ts_predict(model: str, request: Request, version: str = "") -> Response:
        """TorchServe's Predictions: a JSON or raw body in, JSON or raw bytes out."""
        try:
            return await _ts_predict(model, request, compat_torchserve.model_version(version))
        except GatewayError as exc:
            return _ts_error(exc)
        except Exception:
            return _ts_error(internal(log, f"{request.method} {request.url.path}"))

    async def _ts_predict(model: str, request: Request, version: str) -> Response:
        pin = request.headers.get(PIN_HEADER)
        body, ticket = await body_of(request, model, version, pin)
        try:
            signature = dataplane.resolve(model, version, pin).model.signature
            decoded = compat_torchserve.decode_body(
                body, signature, request.headers.get("content-type")
            )
            req = InferRequest(model, decoded.inputs, model_version=version)
            response = await dataplane.infer(
                req, pin=pin, protocol="http", ticket=ticket, headers=request.headers
            )
        finally:
            ticket.release()
        out, media = compat_torchserve.encode_answer(
            response, decoded, want_json=JSON in request.headers.get("accept", "")
        )
        return Response(out, media_type=media)

    r.add_api_route("/ping", ts_ping, methods=["GET"], tags=["torchserve"])
    for path in ("/predictions/{model}", "/predictions/{model}/{version}"):
        # `curl -T file URL`, as TorchServe's docs show it, sends a PUT. One route per
        # method: OpenAPI wants an operation id of its own for each.
        for method in ("POST", "PUT"):
            name = f"ts_predict_{method.lower()}_{path.count('{')}"
            r.add_api_route(
                path, ts_predict, methods=[method], tags=["torchserve"], operation_id=name
            )
    return r


def _json(doc: object) -> Response:
    return Response(orjson.dumps(doc), media_type=JSON)


def _ts_error(exc: GatewayError) -> Response:
    """TorchServe's error body, with the retry hint as on every gateway answer."""
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    body = orjson.dumps(compat_torchserve.error_doc(exc))
    return Response(body, status_code=exc.http_status, media_type=JSON, headers=headers)

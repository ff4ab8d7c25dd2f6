"""Forwarding: what a client's request becomes on its way to a runner, and what the
runner's answer becomes on its way back (pure: no I/O, no state)."""

from __future__ import annotations

import dataclasses
import math

from gateway.errors import BadRequest
from gateway.protocol.classification import classify
from gateway.router import selection
from gateway.router.engine import Routed
from gateway.tensors import InferRequest, InferResponse

# Request parameters the gateway acts on itself; they never reach a runner.
CONSUMED = frozenset({selection.PIN_PARAMETER, "timeout", "binary_data_output"})

MAX_TIMEOUT_S = 24 * 3600.0
"""A deadline further away than this means none in particular: it is cut to this."""


def forwarded(request: InferRequest, version: str) -> InferRequest:
    """`request` as runners get it: the resolved version, every output (the gateway picks
    what was asked for), none of the gateway's own parameters."""
    return dataclasses.replace(
        request,
        model_version=version,
        outputs=(),
        parameters={k: v for k, v in request.parameters.items() if k not in CONSUMED},
    )


def deadline(now: float, given: float | None, request: InferRequest, default_s: float) -> float:
    """The earliest of the caller's own deadline (gRPC's) and the request's `timeout`
    parameter; `default_s` from now only when the caller gave neither."""
    own = timeout_s(request.parameters.get("timeout"))
    if given is None and own is None:
        return now + default_s
    candidates = [d for d in (given, None if own is None else now + own) if d is not None]
    return min(min(candidates), now + MAX_TIMEOUT_S)


def answer(request: InferRequest, version: str, routed: Routed) -> InferResponse:
    """The runner's answer in the client's names, with the outputs it asked for (and the
    classification extension's top classes), and what routing did."""
    outputs = routed.response.outputs
    if request.outputs:
        asked = {o.name: o.classification for o in request.outputs}
        outputs = tuple(
            classify(t, asked[t.name]) if asked[t.name] else t for t in outputs if t.name in asked
        )
    parameters: dict[str, str | bool] = {selection.PIN_PARAMETER: routed.served_by}
    if routed.hedged:
        parameters["hedged"] = True
    if routed.mirrored:
        parameters["mirrored"] = ",".join(routed.mirrored)
    return InferResponse(
        model_name=request.model_name,
        model_version=version,
        id=request.id,
        outputs=outputs,
        parameters=parameters,
    )


def param_pin(request: InferRequest) -> str | None:
    value = request.parameters.get(selection.PIN_PARAMETER)
    return value if isinstance(value, str) else None


def timeout_s(value: object) -> float | None:
    """Triton's `timeout` parameter (microseconds) in seconds; None when absent or 0.
    Anything but a finite non-negative number is a bad request."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest("parameter 'timeout' must be a number of microseconds")
    if value < 0:
        raise BadRequest("parameter 'timeout' must not be negative")
    if value > MAX_TIMEOUT_S * 1e6:
        return MAX_TIMEOUT_S
    return value / 1e6 if value else None

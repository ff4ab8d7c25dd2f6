"""API: what the TF Serving and TorchServe front ends (compat_http.py, compat_grpc.py) share:
one variant pin from the caller's several, and a model's TF Serving version status.

A caller pins a variant as on the v2 API (the `servegate-variant` header or gRPC
metadata, the `model@variant` alias, resolved by the DataPlane) and, on TF Serving's
API, by version label: `/labels/{l}` or ModelSpec.version_label name a variant
(servegate's unit of "which build serves it", where TF Serving's labels name versions).
"""

from __future__ import annotations

from gateway.dataplane import DataPlane
from gateway.errors import BadRequest
from gateway.protocol.compat_tfserving_meta import VersionState, version_states


def one_pin(*pins: str | None) -> str | None:
    """The variant the caller's pins name (all given must agree), or None."""
    given = {p for p in pins if p}
    if len(given) > 1:
        raise BadRequest(f"conflicting variant pins {sorted(given)}")
    return given.pop() if given else None


async def model_status(
    dataplane: DataPlane, model: str, version: str, pin: str | None
) -> list[VersionState]:
    """TF Serving's ModelVersionStatus of `version` (all versions when empty), from the
    readiness of the variant a request would reach; 404 for an unknown model, version
    or variant."""
    target = dataplane.resolve(model, version, pin)
    name = target.model.name
    served = dataplane.served(name, target.variant)
    ready = await dataplane.variant_ready(name, target.variant)
    status = served.status if served is not None else None
    if served is None:
        reason = f"variant '{target.variant}' is not served"
    else:
        down = served.unavailable()
        reason = down.message if down is not None else ""
    return version_states(
        [version] if version else list(target.model.versions),
        ready=ready,
        runner_state=status.state.value if status is not None else None,
        reason=reason,
    )

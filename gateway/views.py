"""Views: what the dataplane says about the models it serves (metadata, Triton's model
configuration, statistics). Read-only: they look at the catalog, change nothing."""

from __future__ import annotations

from typing import Any, Protocol

from gateway.catalog import Catalog, ServedModel
from gateway.protocol import model_config as triton_config
from gateway.router import selection
from gateway.statistics import Statistics, VariantStats


class Target(Protocol):
    version: str
    variant: str
    served: ServedModel


class Served(Protocol):
    """What the views need of the dataplane."""

    catalog: Catalog
    statistics: Statistics

    def resolve(self, model_name: str, version: str = "", *pins: str | None) -> Target: ...

    async def variant_ready(self, model: str, variant: str) -> bool: ...


async def variant_state(served: Served, model: ServedModel, name: str) -> dict[str, str]:
    """A variant's state: its runner's (restarting, failed, with why), its circuit's, or
    whether it answers ready."""
    variant = model.variants.get(name)
    down = variant.unavailable() if variant is not None else None
    if variant is not None and variant.status is not None and down is not None:
        state = {"state": variant.status.state.value, "reason": variant.status.reason}
    elif await served.variant_ready(model.config.name, name):
        state = {"state": "READY"}
    elif variant is None:
        state = {"state": "UNAVAILABLE", "reason": "no runner serves it"}
    else:
        state = {"state": "UNAVAILABLE", "reason": "its runner does not answer ready"}
    return state | {"circuit": model.router.circuits.breaker(name).state.value}


async def model_metadata(
    served: Served, model_name: str, version: str = "", pin: str | None = None
) -> dict[str, Any]:
    """v2 model metadata, plus the routing and the variants with their runner and state."""
    target = served.resolve(model_name, version, pin)
    config, policy = target.served.config, target.served.router.policy.config
    sig = config.signature
    variants = [
        {
            "name": name,
            "runner": v.runner,
            "protocol": v.protocol,
            "platform": v.kind.platform,
            **await variant_state(served, target.served, name),
        }
        for name, v in config.variants.items()
    ]
    return {
        "name": model_name,
        "versions": list(config.versions),
        "platform": config.variants[target.variant].kind.platform,
        "inputs": [s.model_dump() | {"shape": list(s.shape)} for s in sig.inputs],
        "outputs": [s.model_dump() | {"shape": list(s.shape)} for s in sig.outputs],
        "parameters": {
            "default_variant": policy.default,
            "variant": target.variant,
            "routing": policy.policy,
        },
        "variants": variants,
    }


def model_config(
    served: Served, model_name: str, version: str = "", pin: str | None = None
) -> dict[str, Any]:
    """Triton's model configuration of the model as its chosen variant serves it."""
    target = served.resolve(model_name, version, pin)
    return triton_config.model_config(target.served.config, model_name, target.variant)


def model_statistics(
    served: Served, model_name: str = "", version: str = ""
) -> list[dict[str, Any]]:
    """Triton's model_stats: `digits` sums its variants, `digits@jax` is that variant
    alone, no name lists every model and then every variant."""
    if not model_name:
        return served.statistics.report()
    name, alias = selection.split_alias(model_name)
    target = served.resolve(model_name, version)
    found = served.statistics.report(name, version, target.variant if alias else None)
    return found or [VariantStats().doc(model_name, version or target.version)]

"""Load tests: the routing benchmark's arms and faults, from command-line specs (pure, no I/O).

An *arm* is one routing policy the benchmark sets through `PUT /admin/models/{m}/routing`
and drives load under. `--policy NAME[:key=value,...]` names one, over two variants: the
*primary* (the model's default, where a pinned client would go) and the *secondary* (the
hedge, the shadow, the canary, the failover target):

| spec | routing sent |
|---|---|
| `pinned` | `{policy: pinned, default: P}` |
| `hedged:after_ms=15` | `{policy: hedged, default: P, order: [S], after_ms: 15}` |
| `fastest` | `{policy: fastest, default: P, variants: [P, S]}` (+ `by`, `explore`) |
| `mirror` | `{policy: mirror, default: P, shadows: [S]}` (+ `fraction`, `max_inflight`) |
| `failover` | `{policy: failover, default: P, order: [S]}` |
| `weighted:percent=10` | `{policy: weighted, default: P, weights: {P: 90, S: 10}}` |

Other keys (`after`, `budget`, `by`, `explore`, `fraction`, `max_inflight`) go into the
routing as they are, and override a field already there (`pinned:default=jax`).
Each arm is checked against the gateway's own routing config before anything starts, so a
typo fails at once, not after a system was brought up. `--fault VARIANT:key=value,...` is
the body of `PUT /admin/models/{m}/variants/{v}/fault`, as `servegate route --fault` takes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.router.config import FaultConfig, parse_routing

DEFAULT_POLICIES = ("pinned", "hedged:after_ms=15", "hedged:after=p90", "fastest", "mirror")
WEIGHTED_PERCENT = 10.0  # `weighted` without `percent=`: a 10 % canary on the secondary


@dataclass(frozen=True)
class Arm:
    """One routing policy under test: its label in the report and the admin route's body."""

    label: str
    routing: dict[str, Any]

    @property
    def policy(self) -> str:
        return str(self.routing.get("policy", "pinned"))

    @property
    def primary(self) -> str:
        return str(self.routing["default"])


def _value(text: str) -> Any:
    """A spec value as JSON would have it: a number where it reads as one, else the text."""
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number


def parse_pairs(text: str) -> dict[str, Any]:
    """`after_ms=15,budget=0.1` -> {"after_ms": 15, "budget": 0.1}; "" -> {}."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{part!r}: expected key=value")
        out[key.strip()] = _value(value.strip())
    return out


def parse_fault(spec: str) -> tuple[str, dict[str, Any]]:
    """`onnx:delay_ms=50,delay_percent=10` -> ("onnx", {...}), checked as the gateway will."""
    variant, sep, pairs = spec.partition(":")
    if not sep or not variant.strip():
        raise ValueError(f"--fault {spec!r}: expected VARIANT:key=value,...")
    doc = parse_pairs(pairs)
    try:
        FaultConfig.model_validate(doc)
    except ValueError as exc:
        raise ValueError(f"--fault {spec!r}: {exc}") from None
    return variant.strip(), doc


def routing_for(name: str, params: dict[str, Any], primary: str, secondary: str) -> dict[str, Any]:
    """The admin route's body for policy `name` over (primary, secondary), `params` applied."""
    params = dict(params)
    base: dict[str, Any] = {"policy": name, "default": primary}
    if name == "pinned":
        pass
    elif name in ("hedged", "failover"):
        base["order"] = [secondary]
    elif name == "fastest":
        base["variants"] = [primary, secondary]
    elif name == "mirror":
        base["shadows"] = [secondary]
    elif name == "weighted":
        percent = float(params.pop("percent", WEIGHTED_PERCENT))
        base["weights"] = {primary: 100.0 - percent, secondary: percent}
    else:
        raise ValueError(
            f"unknown policy {name!r}: pinned, hedged, fastest, mirror, failover, weighted"
        )
    return {**base, **params}


def parse_policy(spec: str, primary: str, secondary: str) -> Arm:
    """One `--policy` spec as an Arm, its routing validated by the gateway's own parser."""
    name, _, pairs = spec.partition(":")
    try:
        routing = routing_for(name.strip(), parse_pairs(pairs), primary, secondary)
        parse_routing(routing)
    except ValueError as exc:  # pydantic's ValidationError is one
        raise ValueError(f"--policy {spec!r}: {exc}") from None
    return Arm(spec.strip(), routing)


def parse_arms(specs: Sequence[str], primary: str, secondary: str) -> list[Arm]:
    """Every `--policy` as an Arm, in order; the same spec twice is one arm."""
    return [parse_policy(s, primary, secondary) for s in dict.fromkeys(specs)]


def baseline(arms: Sequence[Arm]) -> Arm | None:
    """The arm the others are compared with: the first `pinned` one (no routing at work),
    one pinned to the others' primary if there is one."""
    pinned = [a for a in arms if a.policy == "pinned"]
    primaries = {a.primary for a in arms if a.policy != "pinned"}
    return next((a for a in pinned if a.primary in primaries), pinned[0] if pinned else None)

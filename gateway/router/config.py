"""Router config (leaf-like: pydantic only): model.yaml's `routing:`, `circuit:` and `faults:`.

`RoutingConfig` is a discriminated union on `policy`; a `routing:` without one is `pinned`,
so today's `routing: {default: onnx}` keeps its meaning. Every policy has a `default`: the
variant metadata and readiness use. Which variants exist is not visible from here, so
`check_names` (and `check_fault_names`) are what ModelConfig's validator calls.

This module imports nothing from the gateway: gateway.config imports it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, model_validator

ROUTE_KEY_HEADER = "servegate-route-key"

Quantile = Literal["p50", "p90", "p95", "p99"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class RoutingBase(_Frozen):
    """What every policy's config has."""

    policy: str
    """Which policy: pinned (when left out), weighted, failover, fastest, hedged, mirror."""
    default: str = Field(min_length=1)
    """The variant metadata and readiness use, and the one a request gets by default."""

    def names(self) -> Iterator[str]:
        """Every variant this config names (checked against the model's variants)."""
        yield self.default


class PinnedRouting(RoutingBase):
    """Every request that pins no variant goes to `default` (today's behaviour)."""

    policy: Literal["pinned"] = "pinned"


class WeightedRouting(RoutingBase):
    """A canary split: each request goes to a variant drawn by percentage."""

    policy: Literal["weighted"]
    weights: dict[str, float] = Field(min_length=1)
    """Percent of requests per variant; they sum to 100. A variant that cannot serve is left
    out and the others share its part in proportion."""
    sticky_header: str = Field(default=ROUTE_KEY_HEADER, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    """A request carrying this header (HTTP) / metadata (gRPC) always lands on the same
    variant for the same value (while that variant can serve), so one user sees one
    framework. Lowercase: gRPC metadata keys are."""

    @model_validator(mode="after")
    def _percentages(self) -> WeightedRouting:
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"weights must not be negative, got {self.weights}")
        total = sum(self.weights.values())
        if abs(total - 100.0) > 1e-6:
            raise ValueError(f"weights are percentages and must sum to 100, got {total:g}")
        return self

    def names(self) -> Iterator[str]:
        yield from (self.default, *self.weights)


class FailoverRouting(RoutingBase):
    """`default` first, then `order`: a request that meets 503, 429 or an open circuit goes
    to the next variant that can serve, while its deadline allows. Never on a 4xx."""

    policy: Literal["failover"]
    order: tuple[str, ...] = Field(min_length=1)
    """The variants tried after `default`, in this order."""

    @model_validator(mode="after")
    def _distinct(self) -> FailoverRouting:
        _distinct_names("order", (self.default, *self.order))
        return self

    def names(self) -> Iterator[str]:
        yield from (self.default, *self.order)


class FastestRouting(RoutingBase):
    """Latency-aware: the variant with the lowest EWMA latency, or the less loaded of two
    random ones (power of two choices on calls outstanding), exploring now and then."""

    policy: Literal["fastest"]
    variants: tuple[str, ...] | None = None
    """The variants to choose among; absent: all of the model's."""
    by: Literal["latency", "outstanding"] = "latency"
    """`latency`: lowest EWMA of answered calls; `outstanding`: two random choices, the one
    with fewer calls in flight."""
    explore: float = Field(default=0.05, ge=0.0, le=1.0)
    """Share of requests (`latency` only) sent to a random other variant, so estimates of
    the slower ones stay fresh."""

    @model_validator(mode="after")
    def _distinct(self) -> FastestRouting:
        if self.variants is not None:
            if not self.variants:
                raise ValueError("variants: name at least one, or leave it out for all")
            _distinct_names("variants", self.variants)
        return self

    def names(self) -> Iterator[str]:
        yield from (self.default, *(self.variants or ()))


class HedgedRouting(RoutingBase):
    """`default` first; if it has not answered after a delay, the same request goes to the
    first variant of `order` that can serve too; the first answer wins, the other call is
    cancelled. A budget bounds the extra calls."""

    policy: Literal["hedged"]
    order: tuple[str, ...] = Field(min_length=1)
    """The variants the hedge (and a failover from a `default` that cannot serve) goes to."""
    after_ms: float | None = Field(default=None, gt=0)
    """Hedge after this fixed delay. With `after` too: the delay until the quantile is
    known (enough answered calls)."""
    after: Quantile | None = None
    """Hedge after this quantile of the primary's recent latency (no hedge until it is
    known, unless `after_ms` is given). Neither field: `p95`."""
    budget: float = Field(default=0.1, ge=0.0, le=1.0)
    """Most hedge calls as a share of primary calls (0.1: at most 10 % extra calls)."""

    @model_validator(mode="before")
    @classmethod
    def _p95_unless_told(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("after") is None and data.get("after_ms") is None:
            return {**data, "after": "p95"}
        return data

    @model_validator(mode="after")
    def _distinct(self) -> HedgedRouting:
        _distinct_names("order", (self.default, *self.order))
        return self

    def names(self) -> Iterator[str]:
        yield from (self.default, *self.order)


class MirrorRouting(RoutingBase):
    """Answer from `default`; copy a share of requests to each shadow off the critical path
    and compare its answers with the primary's (live parity)."""

    policy: Literal["mirror"]
    shadows: tuple[str, ...] = Field(min_length=1)
    """Variants that get copies; their answers are compared, never returned."""
    fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of requests copied."""
    max_inflight: int = Field(default=8, ge=1)
    """Copies in flight per shadow; more are dropped (counted), never queued."""

    @model_validator(mode="after")
    def _distinct(self) -> MirrorRouting:
        _distinct_names("shadows", (self.default, *self.shadows))
        return self

    def names(self) -> Iterator[str]:
        yield from (self.default, *self.shadows)


def _policy_of(value: Any) -> str:
    """The union's tag: `policy`, and `pinned` when it is left out."""
    if isinstance(value, Mapping):
        return str(value.get("policy", "pinned"))
    return str(getattr(value, "policy", "pinned"))


RoutingConfig = Annotated[
    Annotated[PinnedRouting, Tag("pinned")]
    | Annotated[WeightedRouting, Tag("weighted")]
    | Annotated[FailoverRouting, Tag("failover")]
    | Annotated[FastestRouting, Tag("fastest")]
    | Annotated[HedgedRouting, Tag("hedged")]
    | Annotated[MirrorRouting, Tag("mirror")],
    Discriminator(_policy_of),
]
"""model.yaml's `routing:`: one of the policies above, chosen by `policy`."""

_ROUTING: TypeAdapter[Any] = TypeAdapter(RoutingConfig)


def parse_routing(data: Any) -> RoutingBase:
    """A RoutingConfig from a mapping (an admin route's body); pydantic's ValidationError
    when it is not one."""
    routing: RoutingBase = _ROUTING.validate_python(data)
    return routing


class CircuitConfig(_Frozen):
    """A circuit breaker per variant: runner-side failures open it, probes close it."""

    consecutive_failures: int = Field(default=5, ge=1)
    """Open after this many runner-side failures in a row."""
    failure_rate: float = Field(default=0.5, gt=0.0, le=1.0)
    """Open when this share of the calls in `window_s` failed ..."""
    min_calls: int = Field(default=20, ge=1)
    """... and the window holds at least this many calls."""
    window_s: float = Field(default=10.0, gt=0)
    cooldown_s: float = Field(default=5.0, gt=0)
    """Time open before probe calls are let through (half-open)."""
    half_open_probes: int = Field(default=1, ge=1)
    """Calls let through at once while half-open; one success closes the circuit, one
    failure opens it again."""


class FaultConfig(_Frozen):
    """Injected faults for one variant (Envoy's fault filter): a delay and/or an abort."""

    delay_ms: float = Field(default=0.0, ge=0)
    """Delay added before the call (still bounded by the request's deadline)."""
    delay_percent: float = Field(default=0.0, ge=0, le=100)
    """Percent of calls delayed."""
    abort_status: Literal[500, 503, 504] | None = None
    """The status an aborted call fails with (500 GatewayError, 503 Unavailable,
    504 DeadlineExceeded), without reaching the runner."""
    abort_percent: float = Field(default=0.0, ge=0, le=100)
    """Percent of calls aborted."""

    @model_validator(mode="after")
    def _abort_needs_status(self) -> FaultConfig:
        if self.abort_percent > 0 and self.abort_status is None:
            raise ValueError("abort_percent needs an abort_status (500, 503 or 504)")
        if self.delay_percent > 0 and self.delay_ms == 0:
            raise ValueError("delay_percent needs a delay_ms")
        return self


def check_names(routing: RoutingBase, variants: Collection[str]) -> None:
    """ValueError naming every variant `routing` names that the model does not have."""
    unknown = sorted({n for n in routing.names() if n not in variants})
    if unknown:
        raise ValueError(
            f"routing ({_policy_of(routing)}) names variants the model does not have: "
            f"{unknown} (variants: {sorted(variants)})"
        )


def check_fault_names(faults: Mapping[str, FaultConfig], variants: Collection[str]) -> None:
    """ValueError naming every faulted variant the model does not have."""
    unknown = sorted(n for n in faults if n not in variants)
    if unknown:
        raise ValueError(f"faults name variants the model does not have: {unknown}")


def _distinct_names(field: str, names: tuple[str, ...]) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{field}: each variant once (and not the default), twice: {twice}")

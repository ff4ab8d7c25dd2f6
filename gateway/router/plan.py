"""Router vocabulary: a Policy turns a snapshot of the variants into a Plan; the engine runs it.

A policy is synchronous and pure apart from its injected rng: no awaits, no sockets, no
metrics, no clock. It sees only the variants that can serve now (runner up, circuit not
open), and raises Unavailable when none of those it would use is among them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import Unavailable
from gateway.router.config import RoutingBase
from gateway.router.stats import VariantView
from gateway.tensors import InferRequest, InferResponse

Send = Callable[[str, InferRequest, float], Awaitable[InferResponse]]
"""(variant, request, absolute deadline) -> the variant's answer: how the engine calls one."""


@dataclass(frozen=True, slots=True)
class Hedge:
    """Send the request to `variant` too when the primary has not answered after `after_s`;
    `budget` is the most hedge calls as a share of primary calls."""

    variant: str
    after_s: float
    budget: float


@dataclass(frozen=True, slots=True)
class Mirror:
    """Copy the request to each of `shadows` once the primary answered, at most
    `max_inflight` copies in flight per shadow."""

    shadows: tuple[str, ...]
    max_inflight: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one request: `primary` first; on 503 / 429 / an open circuit, each of
    `fallbacks` in turn while the deadline allows; maybe a hedge; maybe shadow copies."""

    primary: str
    fallbacks: tuple[str, ...] = ()
    hedge: Hedge | None = None
    mirror: Mirror | None = None

    @property
    def variants(self) -> tuple[str, ...]:
        """Every variant the plan may send the request to, answering or not."""
        hedge = (self.hedge.variant,) if self.hedge is not None else ()
        shadows = self.mirror.shadows if self.mirror is not None else ()
        return (self.primary, *self.fallbacks, *hedge, *shadows)


class Policy(Protocol):
    """One routing policy: built from its config (and an rng), asked once per request."""

    config: RoutingBase
    candidates: tuple[str, ...] | None
    """The variants `choose` may pick from (None: all): only those are snapshotted."""

    @property
    def key_header(self) -> str | None:
        """The header whose value is `choose`'s `key` (sticky routing), or None."""
        ...

    def choose(self, views: Sequence[VariantView], key: str | None = None) -> Plan:
        """The plan for one request, from the variants that can serve now (never empty)."""
        ...


def unavailable(policy: str, wanted: Sequence[str], views: Sequence[VariantView]) -> Unavailable:
    """The error a policy raises when none of the variants it would use can serve."""
    up = [v.name for v in views]
    return Unavailable(f"{policy}: none of {list(wanted)} can serve now (serving: {up})")


def in_order(names: Sequence[str], views: Sequence[VariantView]) -> list[str]:
    """`names` that are among `views`, in the order of `names`."""
    up = {v.name for v in views}
    return [n for n in names if n in up]

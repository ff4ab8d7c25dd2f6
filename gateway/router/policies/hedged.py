"""Router policy `hedged`: the primary, and a second variant if it has not answered in time.

The primary is the first of (default, *order) that can serve; the hedge goes to the next.
Its delay is fixed (`after_ms`) or a quantile of the primary's recent latency (`after`);
until that quantile is known, `after_ms` if given, else no hedge. The engine runs the
timer, spends the budget, takes the first answer and cancels the other call; the rest of
the order stays behind as fallbacks for a primary that refuses (503 / 429 / circuit open).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from gateway.router.config import HedgedRouting
from gateway.router.plan import Hedge, Plan, in_order, unavailable
from gateway.router.stats import VariantView


class Hedged:
    key_header: str | None = None

    def __init__(self, config: HedgedRouting, rng: random.Random | None = None) -> None:
        self.config = config
        self._order = (config.default, *config.order)
        self.candidates: tuple[str, ...] | None = self._order

    def delay_s(self, primary: VariantView) -> float | None:
        """When to hedge a call to `primary`, or None for not yet known."""
        if self.config.after is not None:
            seen = primary.quantile(self.config.after)
            if seen is not None:
                return seen
        return self.config.after_ms / 1000 if self.config.after_ms is not None else None

    def choose(self, views: Sequence[VariantView], key: str | None = None) -> Plan:
        names = in_order(self._order, views)
        if not names:
            raise unavailable("hedged", self._order, views)
        primary, rest = names[0], tuple(names[1:])
        after = self.delay_s(next(v for v in views if v.name == primary))
        hedge = None
        if rest and after is not None and self.config.budget > 0:
            hedge = Hedge(rest[0], after, self.config.budget)
        return Plan(primary, fallbacks=rest, hedge=hedge)

"""Router policy `fastest`: latency-aware choice among the variants that can serve.

`by: latency` takes the lowest cost `ewma * (outstanding + 1)` (Finagle's peak-EWMA idea:
a fast variant with a queue of calls is not the fastest for the next one); a variant with
no answered call yet costs 0, so each gets measured. With probability `explore` a random
other variant goes instead, so the estimates of the slower ones stay fresh.
`by: outstanding` is the power of two choices: of two random variants, the one with fewer
calls in flight (ties: lower EWMA).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from gateway.router.config import FastestRouting
from gateway.router.plan import Plan, unavailable
from gateway.router.stats import VariantView


def cost(view: VariantView) -> float:
    """Expected wait on `view` for one more call: EWMA latency times calls queued with it."""
    return (view.ewma_s or 0.0) * (view.outstanding + 1)


class Fastest:
    key_header: str | None = None

    def __init__(self, config: FastestRouting, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self.candidates: tuple[str, ...] | None = (
            tuple(config.variants) if config.variants is not None else None
        )

    def choose(self, views: Sequence[VariantView], key: str | None = None) -> Plan:
        wanted = self.config.variants
        candidates = views if wanted is None else [v for v in views if v.name in wanted]
        if not candidates:
            raise unavailable("fastest", wanted or [], views)
        if len(candidates) == 1:
            return Plan(candidates[0].name)
        if self.config.by == "outstanding":
            a, b = self._rng.sample(list(candidates), 2)
            pick = min((a, b), key=lambda v: (v.outstanding, v.ewma_s or 0.0))
            return Plan(pick.name)
        best = min(candidates, key=cost)
        if self.config.explore and self._rng.random() < self.config.explore:
            others = [v for v in candidates if v is not best]
            return Plan(self._rng.choice(others).name)
        return Plan(best.name)

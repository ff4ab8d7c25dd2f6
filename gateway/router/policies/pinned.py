"""Router policy `pinned`: every request that pins no variant goes to the default (today's)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from gateway.router.config import PinnedRouting
from gateway.router.plan import Plan, in_order, unavailable
from gateway.router.stats import VariantView


class Pinned:
    key_header: str | None = None

    def __init__(self, config: PinnedRouting, rng: random.Random | None = None) -> None:
        self.config = config
        self.candidates: tuple[str, ...] | None = (config.default,)
        self._plan = Plan(config.default)

    def choose(self, views: Sequence[VariantView], key: str | None = None) -> Plan:
        if not in_order([self.config.default], views):
            raise unavailable("pinned", [self.config.default], views)
        return self._plan

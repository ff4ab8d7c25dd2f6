"""Router policy `failover`: the first of (default, *order) that can serve, the rest behind it.

The engine moves down the fallbacks on 503, 429 or an open circuit, while the deadline
allows, and never on a client's error.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from gateway.router.config import FailoverRouting
from gateway.router.plan import Plan, in_order, unavailable
from gateway.router.stats import VariantView


class Failover:
    key_header: str | None = None

    def __init__(self, config: FailoverRouting, rng: random.Random | None = None) -> None:
        self.config = config
        self._order = (config.default, *config.order)
        self.candidates: tuple[str, ...] | None = self._order

    def choose(self, views: Sequence[VariantView], key: str | None = None) -> Plan:
        names = in_order(self._order, views)
        if not names:
            raise unavailable("failover", self._order, views)
        return Plan(names[0], fallbacks=tuple(names[1:]))

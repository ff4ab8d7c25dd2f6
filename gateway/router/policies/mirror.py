"""Router policy `mirror`: answer from the default; copy a sampled share to the shadows.

The engine sends the copies once the primary has answered, each shadow under its own
bound of copies in flight (more are dropped, never queued), and compares the answers.
A shadow that cannot serve now is left out of the copy; a default that cannot serve is a
503, never a shadow's answer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from gateway.router.config import MirrorRouting
from gateway.router.plan import Mirror as MirrorPlan
from gateway.router.plan import Plan, in_order, unavailable
from gateway.router.stats import VariantView


class Mirror:
    key_header: str | None = None

    def __init__(self, config: MirrorRouting, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self.candidates: tuple[str, ...] | None = (config.default, *config.shadows)

    def choose(self, views: Sequence[VariantView], key: str | None = None) -> Plan:
        primary = self.config.default
        if not in_order([primary], views):
            raise unavailable("mirror", [primary], views)
        shadows = tuple(in_order(self.config.shadows, views))
        if not shadows or self._rng.random() >= self.config.fraction:
            return Plan(primary)
        return Plan(primary, mirror=MirrorPlan(shadows, self.config.max_inflight))

"""Router policy `weighted`: a canary split by percentage, sticky per client key.

A request with a key goes to the variant with the highest weighted rendezvous score of
(key, variant): `-w / ln(u)` with `u` a stable hash of both in (0, 1). That picks each
variant with probability w / sum(w), the same for the same key in every process, and when
a variant cannot serve, only the keys it held move (to the others, in proportion). A
request without a key is a weighted draw from the injected rng.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence

from gateway.router.config import WeightedRouting
from gateway.router.plan import Plan, in_order, unavailable
from gateway.router.stats import VariantView


def unit_hash(key: str, variant: str) -> float:
    """A stable pseudo-random number in (0, 1) for (key, variant): same in every process."""
    digest = hashlib.blake2b(f"{variant}\0{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def rendezvous(key: str, weights: Sequence[tuple[str, float]]) -> str:
    """The variant `key` sticks to among `weights` (all positive)."""
    return max(weights, key=lambda nw: -nw[1] / math.log(unit_hash(key, nw[0])))[0]


class Weighted:
    def __init__(self, config: WeightedRouting, rng: random.Random) -> None:
        self.config = config
        self.key_header: str | None = config.sticky_header
        self._rng = rng
        self._names = [n for n, w in config.weights.items() if w > 0]
        self.candidates: tuple[str, ...] | None = tuple(self._names)

    def choose(self, views: Sequence[VariantView], key: str | None = None) -> Plan:
        names = in_order(self._names, views)
        if not names:
            raise unavailable("weighted", self._names, views)
        weights = [(n, self.config.weights[n]) for n in names]
        if key:
            return Plan(rendezvous(key, weights))
        point = self._rng.random() * sum(w for _, w in weights)
        for name, weight in weights:
            point -= weight
            if point < 0:
                return Plan(name)
        return Plan(weights[-1][0])  # rounding at the very top end

"""Router policies, one module each; `make_policy` picks one by the config's `policy`.

Adding a policy: a config class in router/config.py (a new tag in RoutingConfig), a module
here with a class whose `choose` returns a Plan, and one entry in POLICIES. Nothing else
changes: not the engine, not the dataplane, not the front ends.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from gateway.router.config import RoutingBase
from gateway.router.plan import Policy
from gateway.router.policies.failover import Failover
from gateway.router.policies.fastest import Fastest
from gateway.router.policies.hedged import Hedged
from gateway.router.policies.mirror import Mirror
from gateway.router.policies.pinned import Pinned
from gateway.router.policies.weighted import Weighted

POLICIES: Mapping[str, Callable[[Any, random.Random], Policy]] = {
    "pinned": Pinned,
    "weighted": Weighted,
    "failover": Failover,
    "fastest": Fastest,
    "hedged": Hedged,
    "mirror": Mirror,
}


def make_policy(config: RoutingBase, rng: random.Random) -> Policy:
    """The policy `config` describes (a RoutingConfig), drawing from `rng` where it draws."""
    return POLICIES[config.policy](config, rng)


__all__ = [
    "POLICIES", "Failover", "Fastest", "Hedged", "Mirror", "Pinned", "Weighted", "make_policy",
]  # fmt: skip

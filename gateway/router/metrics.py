"""Router metrics: the hooks the engine calls, and their Prometheus collectors.

The engine only calls a `RouterMetrics` (a Protocol); `NoMetrics` ignores everything,
`PrometheusRouterMetrics` builds its collectors on a registry passed in (the gateway's,
so they appear on /metrics; a fresh one in tests). Label values are model and variant
names from model.yaml and output names from the signature: bounded, never client text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.metrics import LATENCY_BUCKETS, Children
from gateway.router.circuit import CircuitState
from gateway.router.parity import OutputDiff

HedgeOutcome = Literal["sent", "won", "lost", "no_budget"]
ShadowOutcome = Literal["ok", "error", "dropped", "cancelled"]

# Differences from exact (0) through float32 noise (1e-7..1e-5) to plainly different (>1).
DIFF_BUCKETS = (0.0, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


class RouterMetrics(Protocol):
    """What a Router reports; every method must return at once and never raise."""

    def routed(self, model: str, policy: str, variant: str) -> None:
        """A request was answered by `variant` under `policy` ("pin" for a client's pin)."""

    def failover(self, model: str, source: str, target: str, reason: str) -> None:
        """A request left `source` (which could not serve: `reason`) for `target`."""

    def hedge(self, model: str, primary: str, hedge: str, outcome: HedgeOutcome) -> None:
        """A hedge was sent, won, lost, or not sent for want of budget."""

    def shadow(
        self, model: str, primary: str, shadow: str, outcome: ShadowOutcome, seconds: float | None
    ) -> None:
        """A shadow copy finished (or was dropped: `seconds` None)."""

    def parity(self, model: str, primary: str, shadow: str, diff: OutputDiff) -> None:
        """One output of a shadow's answer compared with the primary's."""

    def circuit(self, model: str, variant: str, old: CircuitState, new: CircuitState) -> None:
        """A variant's circuit changed state."""


class NoMetrics:
    """A RouterMetrics that records nothing."""

    def routed(self, model: str, policy: str, variant: str) -> None: ...
    def failover(self, model: str, source: str, target: str, reason: str) -> None: ...
    def hedge(self, model: str, primary: str, hedge: str, outcome: HedgeOutcome) -> None: ...
    def shadow(
        self, model: str, primary: str, shadow: str, outcome: ShadowOutcome, seconds: float | None
    ) -> None: ...
    def parity(self, model: str, primary: str, shadow: str, diff: OutputDiff) -> None: ...
    def circuit(self, model: str, variant: str, old: CircuitState, new: CircuitState) -> None: ...


class PrometheusRouterMetrics:
    """Every router collector, on `registry` (one instance per registry, shared by routers)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = self.registry = registry
        pair = ["model", "primary", "shadow"]
        self._routed = Children(Counter(
            "servegate_routed", "Requests answered, by routing policy and answering variant.",
            ["model", "policy", "variant"], registry=r,
        ))  # fmt: skip
        self._failover = Counter(
            "servegate_failover", "Requests moved from a variant that could not serve to the next.",
            ["model", "source", "target", "reason"], registry=r,
        )  # fmt: skip
        self._hedge = Counter(
            "servegate_hedge", "Hedge calls: sent, won (answered first), lost, or no_budget.",
            ["model", "primary", "hedge", "outcome"], registry=r,
        )  # fmt: skip
        self._shadow = Counter(
            "servegate_shadow", "Shadow copies, by outcome (ok, error, dropped, cancelled).",
            [*pair, "outcome"], registry=r,
        )  # fmt: skip
        self._shadow_seconds = Histogram(
            "servegate_shadow_seconds", "Latency of shadow calls.",
            pair, buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._max_abs = Histogram(
            "servegate_parity_max_abs_diff", "Max absolute diff of an output, shadow vs primary.",
            [*pair, "output"], buckets=DIFF_BUCKETS, registry=r,
        )  # fmt: skip
        self._max_rel = Histogram(
            "servegate_parity_max_rel_diff", "Max relative diff of an output, shadow vs primary.",
            [*pair, "output"], buckets=DIFF_BUCKETS, registry=r,
        )  # fmt: skip
        self._argmax = Counter(
            "servegate_parity_argmax_rows", "Rows of 2-D float outputs, by argmax agreement.",
            [*pair, "output", "agree"], registry=r,
        )  # fmt: skip
        self._mismatch = Counter(
            "servegate_parity_mismatch", "Outputs that could not be compared (missing, shape...).",
            [*pair, "output", "reason"], registry=r,
        )  # fmt: skip
        self._circuit = Counter(
            "servegate_circuit_transitions", "Circuit breaker transitions, by the state entered.",
            ["model", "variant", "state"], registry=r,
        )  # fmt: skip

    def routed(self, model: str, policy: str, variant: str) -> None:
        self._routed(model, policy, variant).inc()

    def failover(self, model: str, source: str, target: str, reason: str) -> None:
        self._failover.labels(model, source, target, reason).inc()

    def hedge(self, model: str, primary: str, hedge: str, outcome: HedgeOutcome) -> None:
        self._hedge.labels(model, primary, hedge, outcome).inc()

    def shadow(
        self, model: str, primary: str, shadow: str, outcome: ShadowOutcome, seconds: float | None
    ) -> None:
        self._shadow.labels(model, primary, shadow, outcome).inc()
        if seconds is not None:
            self._shadow_seconds.labels(model, primary, shadow).observe(seconds)

    def parity(self, model: str, primary: str, shadow: str, diff: OutputDiff) -> None:
        labels = (model, primary, shadow, diff.output)
        if diff.mismatch is not None:
            self._mismatch.labels(*labels, diff.mismatch).inc()
            return
        if diff.max_abs is not None:
            self._max_abs.labels(*labels).observe(diff.max_abs)
        if diff.max_rel is not None:
            self._max_rel.labels(*labels).observe(diff.max_rel)
        if diff.rows:
            self._argmax.labels(*labels, "true").inc(diff.argmax_agree)
            self._argmax.labels(*labels, "false").inc(diff.rows - diff.argmax_agree)

    def circuit(self, model: str, variant: str, old: CircuitState, new: CircuitState) -> None:
        self._circuit.labels(model, variant, new.value).inc()

    def watch_circuits(
        self,
        states: Callable[[], Mapping[str, Mapping[str, CircuitState]]],
        register: Callable[[Collector], None] | None = None,
    ) -> None:
        """A gauge read at scrape time: `states()` is {model: {variant: state}}, and
        servegate_circuit_state{model, variant, state} is 1 for the state each is in.
        `register` (default: our registry's) adds it where scrapes will read it."""
        (register or self.registry.register)(_CircuitCollector(states))


class _CircuitCollector(Collector):
    def __init__(self, states: Callable[[], Mapping[str, Mapping[str, CircuitState]]]) -> None:
        self._states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "servegate_circuit_state", "1 for the state each variant's circuit is in.",
            labels=["model", "variant", "state"],
        )  # fmt: skip
        for model, variants in self._states().items():
            for variant, now in variants.items():
                for state in CircuitState:
                    family.add_metric([model, variant, state.value], 1 if state is now else 0)
        yield family

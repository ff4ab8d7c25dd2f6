"""Leaf: every Prometheus collector of the gateway, built on an injected registry.

Tests pass a fresh CollectorRegistry, so nothing needs cleaning between them. Labels
are passed explicitly by the one caller that knows them (the DataPlane).

In a fleet (gateway/fleet) every worker runs with PROMETHEUS_MULTIPROC_DIR set:
prometheus-client keeps counters, histograms and gauges in files there, and a scrape of
any worker sums every worker's. The gauges read at scrape time (in flight, queued bytes,
circuit states) are the answering worker's own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

M = TypeVar("M", bound=MetricWrapperBase)

# Latency buckets from 0.25 ms (a cached small-model call) to 10 s (a cold compile).
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Children(Generic[M]):
    """A labelled metric's children, looked up once per label values.

    prometheus-client's `labels()` checks, converts and locks on every call: a few µs that
    every request would pay for every metric it touches. A child never changes once made
    (nothing here removes label sets), so keeping it is safe.
    """

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class Metrics:
    """Request, backend and batch-size histograms per model/variant/protocol; variant health."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._live: list[Collector] = []
        self._merged: CollectorRegistry | None = None
        r = self.registry
        self.requests = Children(Counter(
            "servegate_requests", "Inference requests answered, by outcome.",
            ["model", "variant", "protocol", "outcome"], registry=r,
        ))  # fmt: skip
        self.request_seconds = Children(Histogram(
            "servegate_request_seconds", "Time in the gateway from decoded request to answer.",
            ["model", "variant", "protocol"], buckets=LATENCY_BUCKETS, registry=r,
        ))  # fmt: skip
        self.backend_seconds = Histogram(
            "servegate_backend_seconds", "Time of the call to the runner.",
            ["model", "variant"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_rows = Histogram(
            "servegate_request_batch_rows", "Rows (batch dim) per request sent to a runner.",
            ["model", "variant"], buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.variant_up = Gauge(
            "servegate_variant_up", "1 when the variant's runner answered ready at last check.",
            ["model", "variant"], registry=r, multiprocess_mode="livemin",
        )  # fmt: skip
        self.runner_restarts = Counter(
            "servegate_runner_restarts", "Restarts of a local runner by the supervisor.",
            ["runner"], registry=r,
        )  # fmt: skip
        self.runner_up = Gauge(
            "servegate_runner_up", "1 while the supervisor reports the runner READY.",
            ["runner"], registry=r, multiprocess_mode="livemin",
        )  # fmt: skip
        self.variant_stuck = Counter(
            "servegate_variant_stuck", "Times the watchdog found a variant's runner hung.",
            ["model", "variant"], registry=r,
        )  # fmt: skip

    def watch_load(
        self, inflight: Callable[[], Mapping[str, int]], queued_bytes: Callable[[], int]
    ) -> None:
        """Gauges read at scrape time (nothing on the request path): requests in flight per
        variant (`model@variant`) and the request bytes the gateway holds."""
        self.watch(_LoadCollector(inflight, queued_bytes))

    def watch(self, collector: Collector) -> None:
        """Registers a collector that reads its values at scrape time."""
        self.registry.register(collector)
        self._live.append(collector)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes (a fleet's: every worker's, summed)."""
        if not os.environ.get(MULTIPROC_ENV):
            return generate_latest(self.registry)
        if self._merged is None:
            self._merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._merged)
            for collector in self._live:
                self._merged.register(collector)
        return generate_latest(self._merged)


class _LoadCollector(Collector):
    def __init__(
        self, inflight: Callable[[], Mapping[str, int]], queued_bytes: Callable[[], int]
    ) -> None:
        self._inflight = inflight
        self._queued_bytes = queued_bytes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "servegate_inflight_requests", "Requests admitted and not yet answered.",
            labels=["model", "variant"],
        )  # fmt: skip
        for key, n in self._inflight().items():
            model, _, variant = key.partition("@")
            family.add_metric([model, variant], n)
        yield family
        yield GaugeMetricFamily(
            "servegate_queued_request_bytes", "Request bytes the gateway holds now.",
            value=self._queued_bytes(),
        )  # fmt: skip

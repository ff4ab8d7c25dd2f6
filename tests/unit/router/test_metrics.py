"""Router collectors on a fresh registry: every hook lands in its series; circuits by gauge."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.router.circuit import CircuitState
from gateway.router.metrics import NoMetrics, PrometheusRouterMetrics, RouterMetrics
from gateway.router.parity import OutputDiff


def test_parity_and_shadow_series() -> None:
    registry = CollectorRegistry()
    metrics: RouterMetrics = PrometheusRouterMetrics(registry)
    metrics.parity("m", "onnx", "jax", OutputDiff("logits", 2e-6, 1e-5, rows=4, argmax_agree=3))
    metrics.parity("m", "onnx", "jax", OutputDiff("logits", mismatch="shape"))
    metrics.shadow("m", "onnx", "jax", "ok", 0.003)
    metrics.shadow("m", "onnx", "jax", "dropped", None)
    sample = registry.get_sample_value
    out = {"model": "m", "primary": "onnx", "shadow": "jax", "output": "logits"}
    assert sample("servegate_parity_max_abs_diff_bucket", {**out, "le": "1e-06"}) == 0
    assert sample("servegate_parity_max_abs_diff_bucket", {**out, "le": "1e-05"}) == 1
    assert sample("servegate_parity_max_rel_diff_count", out) == 1
    assert sample("servegate_parity_argmax_rows_total", {**out, "agree": "true"}) == 3
    assert sample("servegate_parity_argmax_rows_total", {**out, "agree": "false"}) == 1
    assert sample("servegate_parity_mismatch_total", {**out, "reason": "shape"}) == 1
    pair = {"model": "m", "primary": "onnx", "shadow": "jax"}
    assert sample("servegate_shadow_total", {**pair, "outcome": "dropped"}) == 1
    assert sample("servegate_shadow_seconds_count", pair) == 1


def test_circuit_state_gauge_is_read_at_scrape_time() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusRouterMetrics(registry)
    states = {"m": {"onnx": CircuitState.CLOSED, "jax": CircuitState.OPEN}}
    metrics.watch_circuits(lambda: states)
    metrics.circuit("m", "jax", CircuitState.CLOSED, CircuitState.OPEN)
    sample = registry.get_sample_value
    assert sample("servegate_circuit_state", {"model": "m", "variant": "jax", "state": "OPEN"}) == 1
    assert (
        sample("servegate_circuit_state", {"model": "m", "variant": "jax", "state": "CLOSED"}) == 0
    )
    states["m"]["jax"] = CircuitState.HALF_OPEN
    assert (
        sample("servegate_circuit_state", {"model": "m", "variant": "jax", "state": "HALF_OPEN"})
        == 1
    )
    assert (
        sample(
            "servegate_circuit_transitions_total", {"model": "m", "variant": "jax", "state": "OPEN"}
        )
        == 1
    )


def test_no_metrics_takes_every_hook() -> None:
    metrics: RouterMetrics = NoMetrics()
    metrics.routed("m", "pinned", "a")
    metrics.failover("m", "a", "b", "Unavailable")
    metrics.hedge("m", "a", "b", "sent")
    metrics.shadow("m", "a", "b", "ok", 0.1)
    metrics.parity("m", "a", "b", OutputDiff("y"))
    metrics.circuit("m", "a", CircuitState.CLOSED, CircuitState.OPEN)

"""Routing, circuit and fault config: the union's tags, defaults, and every refusal."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.router.config import (
    ROUTE_KEY_HEADER,
    CircuitConfig,
    FailoverRouting,
    FaultConfig,
    HedgedRouting,
    MirrorRouting,
    PinnedRouting,
    WeightedRouting,
    check_fault_names,
    check_names,
    parse_routing,
)

VARIANTS = ("onnx", "jax", "tensorflow", "pytorch")


def test_a_routing_without_policy_is_pinned_as_today() -> None:
    routing = parse_routing({"default": "onnx"})
    assert isinstance(routing, PinnedRouting)
    assert (routing.policy, routing.default) == ("pinned", "onnx")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"policy": "pinned", "default": "onnx"}, PinnedRouting),
        (
            {"policy": "weighted", "default": "onnx", "weights": {"onnx": 90, "jax": 10}},
            WeightedRouting,
        ),
        ({"policy": "failover", "default": "onnx", "order": ["jax"]}, FailoverRouting),
        ({"policy": "hedged", "default": "onnx", "order": ["jax"], "after_ms": 5}, HedgedRouting),
        ({"policy": "mirror", "default": "onnx", "shadows": ["jax"]}, MirrorRouting),
    ],
)
def test_each_policy_tag_selects_its_config(data: dict[str, object], kind: type) -> None:
    routing = parse_routing(data)
    assert type(routing) is kind
    check_names(routing, VARIANTS)


def test_defaults() -> None:
    weighted = parse_routing({"policy": "weighted", "default": "a", "weights": {"a": 100}})
    assert weighted.sticky_header == ROUTE_KEY_HEADER
    fastest = parse_routing({"policy": "fastest", "default": "a"})
    assert (fastest.variants, fastest.by, fastest.explore) == (None, "latency", 0.05)
    hedged = parse_routing({"policy": "hedged", "default": "a", "order": ["b"]})
    assert (hedged.after, hedged.after_ms, hedged.budget) == ("p95", None, 0.1)
    fixed = parse_routing({"policy": "hedged", "default": "a", "order": ["b"], "after_ms": 5})
    assert (fixed.after, fixed.after_ms) == (None, 5)
    mirror = parse_routing({"policy": "mirror", "default": "a", "shadows": ["b"]})
    assert (mirror.fraction, mirror.max_inflight) == (1.0, 8)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"policy": "canary", "default": "a"}, "does not match any of the expected tags"),
        ({"default": "a", "weights": {"a": 100}}, "Extra inputs are not permitted"),
        ({"policy": "weighted", "default": "a", "weights": {"a": 60, "b": 30}}, "sum to 100"),
        ({"policy": "weighted", "default": "a", "weights": {"a": 110, "b": -10}}, "negative"),
        ({"policy": "weighted", "default": "a", "weights": {}}, "at least 1"),
        (
            {"policy": "weighted", "default": "a", "weights": {"a": 100}, "sticky_header": "X-Key"},
            "should match pattern",
        ),
        ({"policy": "failover", "default": "a", "order": []}, "at least 1"),
        ({"policy": "failover", "default": "a", "order": ["b", "a"]}, "twice: ['a']"),
        ({"policy": "fastest", "default": "a", "explore": 1.5}, "less than or equal to 1"),
        ({"policy": "fastest", "default": "a", "variants": []}, "name at least one"),
        ({"policy": "hedged", "default": "a", "order": ["b"], "after": "p42"}, "'p50'"),
        ({"policy": "hedged", "default": "a", "order": ["b"], "budget": 2}, "less than or equal"),
        ({"policy": "hedged", "default": "a", "order": ["b"], "after_ms": 0}, "greater than 0"),
        ({"policy": "mirror", "default": "a", "shadows": ["a"]}, "twice: ['a']"),
        ({"policy": "mirror", "default": "a", "shadows": ["b"], "fraction": -0.1}, "greater"),
        ({"policy": "mirror", "default": "a", "shadows": ["b"], "max_inflight": 0}, "greater"),
        ({"policy": "pinned"}, "Field required"),
    ],
)
def test_bad_routing_is_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_routing(data)


def test_configs_are_frozen() -> None:
    routing = parse_routing({"default": "a"})
    with pytest.raises(ValidationError):
        routing.default = "b"


@pytest.mark.parametrize(
    "data",
    [
        {"default": "keras"},
        {"policy": "weighted", "default": "onnx", "weights": {"onnx": 50, "keras": 50}},
        {"policy": "failover", "default": "onnx", "order": ["keras"]},
        {"policy": "fastest", "default": "onnx", "variants": ["onnx", "keras"]},
        {"policy": "hedged", "default": "onnx", "order": ["keras"]},
        {"policy": "mirror", "default": "onnx", "shadows": ["keras"]},
    ],
)
def test_check_names_refuses_a_variant_the_model_lacks(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"does not have: \['keras'\]"):
        check_names(parse_routing(data), VARIANTS)


def test_field_docstrings_reach_the_schema() -> None:
    schema = HedgedRouting.model_json_schema()
    assert "share of primary calls" in schema["properties"]["budget"]["description"]


def test_circuit_defaults_and_bounds() -> None:
    assert CircuitConfig().consecutive_failures == 5
    with pytest.raises(ValidationError):
        CircuitConfig(failure_rate=0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"abort_percent": 10}, "needs an abort_status"),
        ({"delay_percent": 10}, "needs a delay_ms"),
        ({"abort_status": 404, "abort_percent": 10}, "500"),
        ({"delay_ms": 5, "delay_percent": 101}, "less than or equal to 100"),
        ({"delay_ms": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_faults_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FaultConfig.model_validate(data)


def test_fault_names_are_checked() -> None:
    check_fault_names({"jax": FaultConfig(delay_ms=5, delay_percent=10)}, VARIANTS)
    with pytest.raises(ValueError, match="keras"):
        check_fault_names({"keras": FaultConfig()}, VARIANTS)

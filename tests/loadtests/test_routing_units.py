"""The routing benchmark's pure parts: specs, /metrics counters, cell figures, goals, report.

/metrics text comes from the gateway's own collectors (PrometheusRouterMetrics and
Metrics on a fresh registry), so the parser reads what a gateway exposes. The admin
client's undo runs over an httpx MockTransport that plays a gateway's admin routes.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.metrics import Metrics
from gateway.router.config import parse_routing
from gateway.router.metrics import PrometheusRouterMetrics
from gateway.router.parity import OutputDiff
from loadtests import page, report, routing_report
from loadtests.arrivals import Outcome, Run, summarize
from loadtests.results import SCHEMA
from loadtests.routing_admin import Admin, AdminError
from loadtests.routing_figures import (
    HEDGE_EXTRA_MAX,
    cell_figures,
    comparisons,
    delta,
    router_counters,
)
from loadtests.routing_specs import (
    DEFAULT_POLICIES,
    baseline,
    parse_arms,
    parse_fault,
    parse_pairs,
    parse_policy,
)

# specs


def test_pairs_read_numbers_as_numbers_and_the_rest_as_text() -> None:
    assert parse_pairs("after_ms=15, budget=0.1,after=p90") == {
        "after_ms": 15, "budget": 0.1, "after": "p90",
    }  # fmt: skip
    assert parse_pairs("") == {}
    with pytest.raises(ValueError, match="key=value"):
        parse_pairs("after_ms")


def test_every_default_policy_is_a_routing_the_gateway_accepts() -> None:
    arms = parse_arms(DEFAULT_POLICIES, "onnx", "jax")
    assert [a.label for a in arms] == list(DEFAULT_POLICIES)
    for arm in arms:
        assert parse_routing(arm.routing).policy == arm.policy
        assert arm.primary == "onnx"
    hedged = {a.label: a.routing for a in arms if a.policy == "hedged"}
    assert hedged["hedged:after_ms=15"] == {
        "policy": "hedged", "default": "onnx", "order": ["jax"], "after_ms": 15,
    }  # fmt: skip
    assert hedged["hedged:after=p90"]["after"] == "p90"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pinned", {"policy": "pinned", "default": "onnx"}),
        ("pinned:default=jax", {"policy": "pinned", "default": "jax"}),
        ("mirror:fraction=0.5", {"policy": "mirror", "default": "onnx", "shadows": ["jax"],
                                 "fraction": 0.5}),
        ("fastest:by=outstanding", {"policy": "fastest", "default": "onnx",
                                    "variants": ["onnx", "jax"], "by": "outstanding"}),
        ("failover", {"policy": "failover", "default": "onnx", "order": ["jax"]}),
        ("weighted:percent=25", {"policy": "weighted", "default": "onnx",
                                 "weights": {"onnx": 75.0, "jax": 25.0}}),
    ],
)  # fmt: skip
def test_a_policy_spec_becomes_the_admin_routes_body(spec: str, expected: dict) -> None:
    assert parse_policy(spec, "onnx", "jax").routing == expected


@pytest.mark.parametrize("spec", ["nope", "hedged:after=p42", "mirror:fraction=2", "pinned:x=1"])
def test_a_bad_policy_spec_fails_before_anything_starts(spec: str) -> None:
    with pytest.raises(ValueError, match="--policy"):
        parse_policy(spec, "onnx", "jax")


def test_faults_parse_as_the_gateway_checks_them() -> None:
    assert parse_fault("onnx:delay_ms=50,delay_percent=10") == (
        "onnx", {"delay_ms": 50, "delay_percent": 10},
    )  # fmt: skip
    for bad in ("delay_ms=50", "onnx:delay_percent=10", "onnx:abort_percent=5"):
        with pytest.raises(ValueError, match="--fault"):
            parse_fault(bad)


def test_the_baseline_is_the_pinned_arm_on_the_primary() -> None:
    arms = parse_arms(["pinned:default=jax", "hedged", "pinned", "pinned"], "onnx", "jax")
    assert [a.label for a in arms] == ["pinned:default=jax", "hedged", "pinned"]
    base = baseline(arms)
    assert base is not None and base.label == "pinned"
    assert baseline(parse_arms(["hedged"], "onnx", "jax")) is None


# /metrics counters


def _exposition(hedges: int, shadows: int, rows: int) -> str:
    """What a gateway's /metrics says after some routed traffic (its own collectors)."""
    registry = CollectorRegistry()
    router, gateway = PrometheusRouterMetrics(registry), Metrics(registry)
    for _ in range(hedges):
        router.hedge("digits", "onnx", "jax", "sent")
        router.hedge("digits", "onnx", "jax", "won")
    router.hedge("other", "onnx", "jax", "sent")  # another model: not counted
    for _ in range(shadows):
        router.shadow("digits", "onnx", "jax", "ok", 0.002)
        router.parity("digits", "onnx", "jax", OutputDiff("logits", 1e-6, 1e-5, 2, 2))
    router.shadow("digits", "onnx", "jax", "dropped", None)
    router.parity("digits", "onnx", "jax", OutputDiff("logits", 0.5, 0.1, 1, 0))
    router.routed("digits", "hedged", "onnx")
    for _ in range(rows):
        gateway.backend_seconds.labels("digits", "onnx").observe(0.001)
        gateway.batch_rows.labels("digits", "onnx").observe(2)
    return generate_latest(registry).decode()


def test_router_counters_read_the_gateways_own_exposition() -> None:
    c = router_counters(_exposition(hedges=3, shadows=4, rows=5), "digits")
    assert c["hedge"] == {"sent": 3.0, "won": 3.0}
    assert c["shadow"] == {"ok": 4.0, "dropped": 1.0}
    assert c["routed"] == {"onnx": 1.0}
    assert c["runner_calls"] == {"onnx": 5.0} and c["runner_rows"] == {"onnx": 10.0}
    assert c["parity"] == {
        "compared": 5.0, "within_1e-4": 4.0, "argmax_true": 8.0, "argmax_false": 1.0,
    }  # fmt: skip
    assert router_counters(_exposition(1, 1, 1), "absent") == {
        g: {} for g in ("hedge", "routed", "shadow", "runner_calls", "runner_rows", "parity")
    }


def test_delta_counts_what_happened_between_two_reads() -> None:
    before = router_counters(_exposition(hedges=2, shadows=0, rows=1), "digits")
    after = router_counters(_exposition(hedges=5, shadows=3, rows=4), "digits")
    d = delta(before, after)
    assert d["hedge"] == {"sent": 3.0, "won": 3.0}
    assert d["shadow"] == {"ok": 3.0, "dropped": 0.0}
    assert d["runner_rows"] == {"onnx": 6.0}


# cell figures and goals


def _summary(latencies_ms: list[float], errors: int = 0) -> dict[str, Any]:
    outs = [Outcome(i, 0.0, 0.0, ms / 1000, "OK") for i, ms in enumerate(latencies_ms)]
    outs += [Outcome(len(outs) + i, 0.0, 0.0, 0.001, "UNAVAILABLE") for i in range(errors)]
    return summarize(Run(outs, 1.0))


def _cell(arm: str, policy: str, rnd: int, c: int, latencies: list[float], hedges: float = 0,
          shadows: float = 0) -> dict[str, Any]:  # fmt: skip
    counters = delta({}, {"hedge": {"sent": hedges}, "shadow": {"ok": shadows}})
    served = {"onnx": len(latencies)}
    figures = cell_figures(_summary(latencies), served, 0, 0, counters, 1)
    return {"round": rnd, "concurrency": c, "arm": arm, "policy": policy, **figures}


SLOW_TAIL = [2.0] * 95 + [52.0] * 5  # p99 ~52 ms: 5 % of calls delayed 50 ms
CUT_TAIL = [2.0] * 95 + [14.0] * 5


def test_cell_figures_count_requests_errors_and_extra_calls() -> None:
    counters = delta({}, {"hedge": {"sent": 10, "won": 8, "lost": 2}, "runner_rows": {"jax": 5}})
    f = cell_figures(_summary([1.0] * 100, errors=4), {"onnx": 90, "jax": 10}, 10, 0, counters, 1)
    assert f["requests"] == 104 and f["ok"] == 100
    assert f["errors"] == {"UNAVAILABLE": 4}
    assert f["answered_by"] == {"jax": 10, "onnx": 90}
    assert f["hedges"] == {"sent": 10, "won": 8, "lost": 2, "no_budget": 0.0}
    assert f["extra_calls"] == pytest.approx(10 / 104)
    assert f["runner_rows_per_request"] == {"jax": pytest.approx(5 / 104)}
    assert f["latency_ms"]["p50"] == pytest.approx(1.0)


def test_hedged_meets_its_goal_only_with_3x_lower_p99_and_at_most_10_percent_extra() -> None:
    cells = [
        _cell("pinned", "pinned", 1, 16, SLOW_TAIL),
        _cell("hedged:a", "hedged", 1, 16, CUT_TAIL, hedges=5),
        _cell("hedged:b", "hedged", 1, 16, CUT_TAIL, hedges=100 * HEDGE_EXTRA_MAX + 1),
        _cell("hedged:c", "hedged", 1, 16, [2.0] * 95 + [20.0] * 5, hedges=5),
        _cell("fastest", "fastest", 1, 16, CUT_TAIL),
    ]
    rows = {r["arm"]: r for r in comparisons(cells, "pinned")}
    assert set(rows) == {"hedged:a", "hedged:b", "hedged:c", "fastest"}
    assert rows["hedged:a"]["goal"]["met"] and rows["hedged:a"]["p99_lower_x"] > 3
    assert not rows["hedged:b"]["goal"]["met"]  # too many extra calls
    assert not rows["hedged:c"]["goal"]["met"]  # p99 cut less than 3x
    assert rows["fastest"]["goal"] is None


def test_mirror_meets_its_goal_with_p50_within_5_percent_of_the_baseline() -> None:
    cells = [
        _cell("pinned", "pinned", 1, 16, [2.0] * 100),
        _cell("mirror", "mirror", 1, 16, [2.08] * 100, shadows=100),
        _cell("pinned", "pinned", 2, 16, [2.0] * 100),
        _cell("mirror", "mirror", 2, 16, [2.2] * 100, shadows=100),
    ]
    rows = {r["round"]: r for r in comparisons(cells, "pinned")}
    assert rows[1]["goal"]["met"] and rows[1]["p50_change"] == pytest.approx(0.04)
    assert not rows[2]["goal"]["met"]  # +10 %
    assert rows[1]["shadow_copies"] == 1.0


def test_comparisons_pair_cells_of_the_same_round_and_concurrency_only() -> None:
    cells = [
        _cell("pinned", "pinned", 1, 1, SLOW_TAIL),
        _cell("hedged", "hedged", 1, 16, CUT_TAIL, hedges=5),  # no pinned cell at c=16
        _cell("hedged", "hedged", 2, 1, CUT_TAIL, hedges=5),  # no pinned cell in round 2
        _cell("hedged", "hedged", 1, 1, CUT_TAIL, hedges=5),
    ]
    (row,) = comparisons(cells, "pinned")
    assert (row["round"], row["concurrency"]) == (1, 1)


# the report


def _doc(cells: list[dict[str, Any]], routing: bool = True) -> dict[str, Any]:
    settings = {"duration_s": 1.0, "warmup_s": 0.5, "rounds": 2, "concurrency": [1, 16],
                "batch_size": 1, "deadline_s": 5.0, "protocol": "grpc"}  # fmt: skip
    env = {"cpu_model": "test cpu", "logical_cores": 2, "physical_cores": 2, "memory_gb": 1,
           "os": "linux", "python": "3.11", "load_average_at_start": [1.0, 1.0, 1.0],
           "gpu": None, "java": None, "versions": {"servegate": "0"}}  # fmt: skip
    doc: dict[str, Any] = {
        "schema": SCHEMA, "created": "now", "environment": env,
        "settings": {"preset": "routing", **settings}, "cells": [],
        "cold_start": {"runners": {}, "first_request_ms": {}},
    }  # fmt: skip
    if routing:
        doc["routing"] = {
            "model": "digits", "primary": "onnx", "secondary": "jax",
            "faults": {"onnx": {"delay_ms": 50, "delay_percent": 10}}, "baseline": "pinned",
            "settings": settings, "cells": cells, "comparisons": comparisons(cells, "pinned"),
        }  # fmt: skip
    return doc


def test_the_report_shows_the_routing_section_instead_of_an_empty_matrix() -> None:
    cells = [
        _cell("pinned", "pinned", rnd, c, SLOW_TAIL) for rnd in (1, 2) for c in (1, 16)
    ] + [_cell("hedged:after=p90", "hedged", rnd, c, CUT_TAIL, hedges=5)
         for rnd in (1, 2) for c in (1, 16)]  # fmt: skip
    cells[0]["cpu_ms_per_request"] = {"gateway": 0.84, "onnx": 0.38}
    doc = _doc(cells)
    md = report.markdown(doc)
    assert "| gateway 0.84, onnx 0.38 |" in md
    assert "## Routing policies" in md and "## Verdicts" not in md and "## Environment" in md
    assert " | ".join(routing_report.COMPARE_HEADER) in md
    assert md.count("| hedged:after=p90 |") == 4 + 4  # a comparison row and a cell row each
    assert "onnx: delay_ms=50, delay_percent=10" in md
    html = page.render(doc)
    assert 'id="routing"' in html and 'id="routing-latency"' in html
    assert 'id="verdicts"' not in html
    fig = routing_report.figure(doc["routing"])
    assert len(fig.data) == 2 * 2 * 2  # (p50, p99) x concurrency x round


def test_a_matrix_report_without_routing_is_unchanged() -> None:
    doc = _doc([], routing=False)
    md = report.markdown(doc)
    assert "## Verdicts" in md and "## Routing policies" not in md
    html = page.render(doc)
    assert 'id="verdicts"' in html and 'id="routing"' not in html
    assert json.loads(json.dumps(doc)) == doc


# the admin client's undo


class FakeAdmin:
    """A gateway's admin routes for one model, in memory; `fail` paths answer 500."""

    def __init__(self, fail: str = "") -> None:
        self.routing: dict[str, Any] = {"policy": "pinned", "default": "onnx"}
        self.faults: dict[str, dict[str, Any]] = {"jax": {"abort_status": 503}}
        self.fail = fail
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.calls.append(f"{method} {path}")
        if self.fail and self.fail in f"{method} {path}":
            return httpx.Response(500, json={"error": "boom"})
        if path == "/admin/models/digits/routing":
            if method == "PUT":
                self.routing = json.loads(request.content)
            return httpx.Response(200, json={"routing": self.routing, "faults": self.faults})
        variant = path.split("/")[-2]
        if method == "PUT":
            self.faults[variant] = json.loads(request.content)
        else:
            self.faults.pop(variant, None)
        return httpx.Response(200, json={"routing": self.routing, "faults": self.faults})


def test_restore_puts_back_the_routing_and_the_faults_it_found() -> None:
    fake = FakeAdmin()
    admin = Admin("http://gw", transport=httpx.MockTransport(fake))
    before = admin.snapshot("digits")
    admin.set_fault("digits", "onnx", {"delay_ms": 50, "delay_percent": 10})
    admin.set_fault("digits", "jax", {"delay_ms": 5, "delay_percent": 1})
    admin.set_routing("digits", {"policy": "mirror", "default": "onnx", "shadows": ["jax"]})
    assert admin.restore("digits", before, ["onnx", "jax", "onnx"]) == []
    assert fake.routing == {"policy": "pinned", "default": "onnx"}
    assert fake.faults == {"jax": {"abort_status": 503}}  # onnx cleared, jax as it was


def test_restore_tries_every_step_and_reports_the_ones_that_failed() -> None:
    fake = FakeAdmin(fail="PUT /admin/models/digits/routing")
    admin = Admin("http://gw", transport=httpx.MockTransport(fake))
    before = admin.snapshot("digits")
    fake.faults["onnx"] = {"delay_ms": 50, "delay_percent": 10}
    with pytest.raises(AdminError, match="500 boom"):
        admin.set_routing("digits", {"policy": "pinned", "default": "jax"})
    problems = admin.restore("digits", before, ["onnx"])
    assert len(problems) == 1 and problems[0].startswith("routing:")
    assert "onnx" not in fake.faults  # the fault step still ran

"""Load tests: the routing benchmark's figures (pure: /metrics text and outcomes in, dicts out).

Each cell (one policy at one concurrency in one round) gets its latency percentiles,
throughput and errors from the generator's outcomes, which variant answered from the
answers' `parameters.variant`, and what the router did besides from the gateway's
/metrics, read before and after the cell: hedges sent, won, lost or refused for want of
budget (`servegate_hedge_total`), shadow copies by outcome (`servegate_shadow_total`),
live parity (`servegate_parity_*`), and the rows each variant's runner was sent
(`servegate_request_batch_rows_sum`: runner calls batch, so rows, not calls, count work).

`comparisons` sets each cell against the pinned baseline of the same round and
concurrency and judges issue 13's goals — reported, never asserted: `hedged` cuts p99 at
least HEDGE_P99_FACTOR times with at most HEDGE_EXTRA_MAX extra runner calls; `mirror`
keeps the primary's p50 within MIRROR_P50_MAX of no mirroring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

HEDGE_P99_FACTOR = 3.0  # baseline p99 / hedged p99, at least
HEDGE_EXTRA_MAX = 0.10  # hedge calls per request, at most
MIRROR_P50_MAX = 0.05  # mirror p50 / baseline p50 - 1, at most
PARITY_ATOL = 1e-4  # the bucket counted as "within" for live parity

Counters = dict[str, dict[str, float]]
GROUPS = ("hedge", "routed", "shadow", "runner_calls", "runner_rows", "parity")


def router_counters(metrics_text: str, model: str) -> Counters:
    """The router's counters for `model` in a Prometheus exposition, by group and key:
    hedge/shadow by outcome, routed/runner_calls/runner_rows by variant, parity as
    compared / within_1e-4 / argmax_true / argmax_false (rows)."""
    out: Counters = {g: {} for g in GROUPS}

    def add(group: str, key: str, value: float) -> None:
        out[group][key] = out[group].get(key, 0.0) + value

    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            labels = s.labels
            if labels.get("model") != model:
                continue
            name, value = s.name, float(s.value)
            if name == "servegate_hedge_total":
                add("hedge", labels["outcome"], value)
            elif name == "servegate_routed_total":
                add("routed", labels["variant"], value)
            elif name == "servegate_shadow_total":
                add("shadow", labels["outcome"], value)
            elif name == "servegate_backend_seconds_count":
                add("runner_calls", labels["variant"], value)
            elif name == "servegate_request_batch_rows_sum":
                add("runner_rows", labels["variant"], value)
            elif name == "servegate_parity_max_abs_diff_count":
                add("parity", "compared", value)
            elif name == "servegate_parity_max_abs_diff_bucket":
                if abs(float(labels["le"]) - PARITY_ATOL) < PARITY_ATOL * 1e-6:
                    add("parity", "within_1e-4", value)
            elif name == "servegate_parity_argmax_rows_total":
                add("parity", f"argmax_{labels['agree']}", value)
    return out


def delta(before: Counters, after: Counters) -> Counters:
    """`after - before`, group by group (a key only in `after` counts from 0)."""
    return {
        g: {k: v - before.get(g, {}).get(k, 0.0) for k, v in after.get(g, {}).items()}
        for g in GROUPS
    }


def _share(n: float, of: float) -> float | None:
    return n / of if of else None


def cell_figures(
    summary: Mapping[str, Any],
    served: Mapping[str, int],
    hedged_answers: int,
    mirrored_answers: int,
    counters: Counters,
    batch_size: int,
) -> dict[str, Any]:
    """One cell: `summary` is loadtests.arrivals.summarize of its run, `served` the answers
    by `parameters.variant`, `counters` the /metrics delta over the cell."""
    requests = int(summary["sent"])
    hedge = counters.get("hedge", {})
    shadow = counters.get("shadow", {})
    rows = counters.get("runner_rows", {})
    copies = sum(v for k, v in shadow.items() if k != "dropped")
    return {
        "requests": requests,
        "ok": int(summary["ok"]),
        "errors": {c: n for c, n in summary["codes"].items() if c not in ("OK", "200")},
        "ok_per_s": summary["admitted_per_s"],
        "latency_ms": dict(summary["latency_ms"]),
        "answered_by": dict(sorted(served.items())),
        "hedged_answers": hedged_answers,
        "mirrored_answers": mirrored_answers,
        "hedges": {k: hedge.get(k, 0.0) for k in ("sent", "won", "lost", "no_budget")},
        "extra_calls": _share(hedge.get("sent", 0.0), requests),
        "shadows": dict(sorted(shadow.items())),
        "shadow_copies": _share(copies, requests),
        "runner_rows_per_request": {
            v: n / (requests * batch_size) for v, n in sorted(rows.items()) if requests
        },
        "parity": dict(counters.get("parity", {})),
    }


def _goal(met: bool, text: str) -> dict[str, Any]:
    return {"met": met, "text": text}


def judge(policy: str, base: Mapping[str, Any], cell: Mapping[str, Any]) -> dict[str, Any] | None:
    """Issue 13's goal for a `policy` cell against its baseline, or None (no goal set)."""
    b, c = base["latency_ms"], cell["latency_ms"]
    if policy == "hedged":
        ratio = b["p99"] / c["p99"] if b["p99"] and c["p99"] else None
        extra = cell["extra_calls"]
        met = ratio is not None and ratio >= HEDGE_P99_FACTOR and (extra or 0) <= HEDGE_EXTRA_MAX
        return _goal(
            met,
            f"p99 {_x(ratio)} lower (goal >= {HEDGE_P99_FACTOR:g}x), {_pct(extra)} extra "
            f"runner calls (goal <= {HEDGE_EXTRA_MAX:.0%})",
        )
    if policy == "mirror":
        change = c["p50"] / b["p50"] - 1 if b["p50"] and c["p50"] else None
        met = change is not None and change <= MIRROR_P50_MAX
        return _goal(
            met,
            f"primary p50 {_signed(change)} vs no mirroring (goal <= +{MIRROR_P50_MAX:.0%})",
        )
    return None


def comparisons(cells: Sequence[Mapping[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Every cell but the baseline's against the baseline cell (label `baseline`) of the
    same round and concurrency: p50 and p99 ratios, extra calls, and the goal if any."""
    base = {(c["round"], c["concurrency"]): c for c in cells if c["arm"] == baseline}
    out = []
    for c in cells:
        b = base.get((c["round"], c["concurrency"]))
        if c["arm"] == baseline or b is None:
            continue
        lb, lc = b["latency_ms"], c["latency_ms"]
        out.append(
            {
                "arm": c["arm"],
                "policy": c["policy"],
                "round": c["round"],
                "concurrency": c["concurrency"],
                "baseline_p50_ms": lb["p50"],
                "p50_ms": lc["p50"],
                "p50_change": lc["p50"] / lb["p50"] - 1 if lb["p50"] and lc["p50"] else None,
                "baseline_p99_ms": lb["p99"],
                "p99_ms": lc["p99"],
                "p99_lower_x": lb["p99"] / lc["p99"] if lb["p99"] and lc["p99"] else None,
                "extra_calls": c["extra_calls"],
                "shadow_copies": c["shadow_copies"],
                "goal": judge(c["policy"], b, c),
            }
        )
    return out


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.1f} %"

"""Load tests: the open-loop benchmark's verdicts and table (pure: its JSON in, figures out).

`goals` judges a run against the overload goal of issue 10 — reported, never asserted:
at the top rate, admitted throughput within 10 % of capacity, admitted p99 under 5x
the p99 at the lowest rate, gateway RSS bounded (the top rate's max within 1.5x the
lowest rate's max: a queue that grows with the load shows as memory), and every request
ended (nothing unanswered, nothing the generator failed to send).

A fifth line judges the generator itself: where its start lag p99 passes LAG_LIMIT_MS
it could not keep the schedule (CPU shared with the gateway, usually), its own loop
delayed the answers it timed, and that rate's figures are not the gateway's alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

THROUGHPUT_FLOOR = 0.9  # admitted / capacity
P99_CEILING = 5.0  # top-rate p99 / lowest-rate p99
RSS_CEILING = 1.5  # top-rate max RSS / lowest-rate max RSS
LAG_LIMIT_MS = 50.0  # start lag p99 above this: the generator, not only the gateway, was slow


def behind(step: dict[str, Any]) -> bool:
    """The generator kept its schedule badly at this rate (see the module docstring)."""
    lag = step["start_lag_ms"]["p99"]
    return lag is not None and lag > LAG_LIMIT_MS


def gateway_rss_max(step: dict[str, Any]) -> float | None:
    row = step.get("resources", {}).get("gateway")
    return float(row["rss_mb_max"]) if row else None


def _goal(met: bool, value: float | None, text: str) -> dict[str, Any]:
    return {"met": met, "value": value, "text": text}


def goals(
    capacity: float, steps: Sequence[dict[str, Any]], baseline: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Each goal: met (bool), the measured value, and a sentence with the figures;
    `baseline` is the generator alone at the top rate (loadtests/refuser.py), if run."""
    if not steps:
        return {}
    low = min(steps, key=lambda s: s["multiplier"])
    top = max(steps, key=lambda s: s["multiplier"])
    name = f"{top['multiplier']:g}x"
    out: dict[str, dict[str, Any]] = {}
    ratio = top["admitted_per_s"] / capacity if capacity > 0 else 0.0
    out["throughput"] = _goal(
        ratio >= THROUGHPUT_FLOOR,
        ratio,
        f"admitted at {name}: {top['admitted_per_s']:.0f}/s = {ratio:.0%} of capacity "
        f"{capacity:.0f}/s (goal >= {THROUGHPUT_FLOOR:.0%})",
    )
    p_low, p_top = low["latency_ms"]["p99"], top["latency_ms"]["p99"]
    p_ratio = p_top / p_low if p_low and p_top is not None else None
    out["p99"] = _goal(
        p_ratio is not None and p_ratio < P99_CEILING,
        p_ratio,
        f"admitted p99 at {name}: {_ms(p_top)} ms vs {_ms(p_low)} ms at "
        f"{low['multiplier']:g}x = {_x(p_ratio)} (goal < {P99_CEILING:g}x)",
    )
    r_low, r_top = gateway_rss_max(low), gateway_rss_max(top)
    r_ratio = r_top / r_low if r_low and r_top is not None else None
    out["rss"] = _goal(
        r_ratio is not None and r_ratio <= RSS_CEILING,
        r_ratio,
        f"gateway RSS max at {name}: {_mb(r_top)} MB vs {_mb(r_low)} MB at "
        f"{low['multiplier']:g}x = {_x(r_ratio)} (goal <= {RSS_CEILING:g}x)",
    )
    unanswered = sum(s["unanswered"] for s in steps)
    not_sent = sum(s["not_sent"] for s in steps)
    out["all_ended"] = _goal(
        unanswered == 0 and not_sent == 0,
        float(unanswered + not_sent),
        f"{unanswered} unanswered, {not_sent} not sent over every rate (goal 0)",
    )
    late = [f"{s['multiplier']:g}x" for s in steps if behind(s)]
    text = (
        f"start lag p99 over {LAG_LIMIT_MS:g} ms at {', '.join(late)}: the generator fell "
        "behind there, so those rows measure it too"
        if late
        else f"start lag p99 within {LAG_LIMIT_MS:g} ms at every rate"
    )
    alone_ok = baseline is None or not (
        behind(baseline) or baseline["unanswered"] or baseline["not_sent"]
    )
    if baseline is not None:
        text += f"; alone at {baseline['multiplier']:g}x (a server that refuses at once) it " + (
            "kept up" if alone_ok else "could not: that rate is beyond this generator here"
        )
    out["generator_kept_up"] = _goal(not late and alone_ok, float(len(late)), text)
    return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _others(step: dict[str, Any]) -> str:
    """Every code but OK and 429 with its share, e.g. "UNAVAILABLE 2.0%, 504 0.1%"."""
    shares = step["other_shares"]
    return ", ".join(f"{c} {_pct(s)}" for c, s in shares.items()) or "-"


def table(doc: dict[str, Any]) -> Table:
    """One row per rate: offered, admitted, latency of admitted, refusals, the rest; the
    generator's start lag and CPU, and what else the machine ran meanwhile (others CPU %,
    in % of one core: on a shared machine, the noise in that row's figures). A last row
    "Nx alone" is the generator at the top rate against a server that refuses at once."""
    capacity = doc["capacity"]["rate"]
    t = Table(
        "rate", "offered/s", "sent/s", "admitted/s", "p50 ms", "p99 ms", "429",
        "other codes", "unanswered", "not sent", "lag p99 ms", "gateway RSS MB",
        "gen CPU %", "others CPU %",
        title=f"{doc['target']} open loop, capacity {capacity:.0f}/s "
        f"({doc['settings'].get('protocol', '?')})",
    )  # fmt: skip
    t.columns[7].min_width = 26  # the other codes, e.g. "UNAVAILABLE 2.0%, 504 0.1%"
    rows = [(f"{s['multiplier']:g}x", s) for s in doc["steps"]]
    if doc.get("baseline"):
        rows.append((f"{doc['baseline']['multiplier']:g}x alone", doc["baseline"]))
    for name, s in rows:
        gen = s.get("resources", {}).get("loadgen", {})
        others = s.get("resources", {}).get("_machine", {}).get("other_cpu_pct")
        bad = s["unanswered"] > 0 or s["not_sent"] > 0
        style = "red" if bad else "yellow" if behind(s) else None
        t.add_row(
            name, f"{s['offered_rate']:.0f}", f"{s['sent_per_s']:.0f}",
            f"{s['admitted_per_s']:.0f}", _ms(s["latency_ms"]["p50"]),
            _ms(s["latency_ms"]["p99"]), _pct(s["refused_share"]), _others(s),
            str(s["unanswered"]), str(s["not_sent"]), _ms(s["start_lag_ms"]["p99"]),
            _mb(gateway_rss_max(s)), f"{gen['cpu_pct']:.0f}" if gen else "-",
            "-" if others is None else f"{others:.0f}",
            style=style,
        )  # fmt: skip
    return t

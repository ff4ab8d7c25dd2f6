"""Load tests: what the cells say: the gateway's own overhead and the verdicts.

Pure functions over results.json's `cells`. A cell that had failures never wins a
verdict (a fast wrong or refused answer is not fast), and gateway overhead is taken only
between a gateway cell and its direct-to-runner twin (same model, variant, concurrency
and batch size), both free of failures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Cell = Mapping[str, Any]


def clean(cell: Cell) -> bool:
    """Ran, answered, and never failed."""
    return cell.get("requests", 0) > 0 and cell.get("failures", 0) == 0 and cell.get("p50_ms")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def overhead(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """Per gateway cell: gateway minus direct (ms) and gateway / direct, at p50 and p99,
    and the throughput ratio."""
    direct = {
        (c["model"], c["variant"], c["concurrency"], c["batch_size"]): c
        for c in cells
        if c["target"] == "direct" and clean(c)
    }
    rows = []
    for c in cells:
        if c["target"] != "gateway" or not clean(c):
            continue
        d = direct.get((c["model"], c["variant"], c["concurrency"], c["batch_size"]))
        if d is None:
            continue
        rows.append(
            {
                "model": c["model"],
                "variant": c["variant"],
                "protocol": c["protocol"],
                "direct_wire": d["wire"],
                "concurrency": c["concurrency"],
                "batch_size": c["batch_size"],
                "gateway_p50_ms": c["p50_ms"],
                "direct_p50_ms": d["p50_ms"],
                "delta_p50_ms": _diff(c["p50_ms"], d["p50_ms"]),
                "ratio_p50": _ratio(c["p50_ms"], d["p50_ms"]),
                "delta_p99_ms": _diff(c["p99_ms"], d["p99_ms"]),
                "ratio_p99": _ratio(c["p99_ms"], d["p99_ms"]),
                "gateway_rps": c["rps"],
                "direct_rps": d["rps"],
                "throughput_ratio": _ratio(c["rps"], d["rps"]),
            }
        )
    return rows


def _best(cells: Iterable[Cell], key: str, highest: bool = False) -> dict[str, Any] | None:
    ranked = [c for c in cells if c.get(key) is not None]
    if not ranked:
        return None
    pick = max(ranked, key=lambda c: c[key]) if highest else min(ranked, key=lambda c: c[key])
    return {"variant": pick["variant"], "value": pick[key]}


def verdict_group(cell: Cell) -> str:
    """The column a verdict compares within: a gateway protocol, or `direct`."""
    return cell["protocol"] if cell["target"] == "gateway" else "direct"


def verdicts(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """Per model, batch size, concurrency and protocol (or direct): the fastest variant at
    p50 and at p99, and the one with the highest throughput; failing variants are listed."""
    groups: dict[tuple[str, int, int, str], list[Cell]] = {}
    for c in cells:
        key = (c["model"], c["batch_size"], c["concurrency"], verdict_group(c))
        groups.setdefault(key, []).append(c)
    rows = []
    for (model, batch, conc, protocol), members in groups.items():
        ok = [c for c in members if clean(c)]
        rows.append(
            {
                "model": model,
                "batch_size": batch,
                "concurrency": conc,
                "protocol": protocol,
                "fastest_p50": _best(ok, "p50_ms"),
                "fastest_p99": _best(ok, "p99_ms"),
                "highest_throughput": _best(ok, "infer_per_s", highest=True),
                "failing": sorted(c["variant"] for c in members if not clean(c)),
            }
        )
    return rows


def protocol_speedup(cells: Sequence[Cell], fast: str, slow: str) -> list[dict[str, Any]]:
    """Per gateway cell pair: how many times lower `fast`'s p50 is than `slow`'s."""
    index = {
        (c["model"], c["variant"], c["concurrency"], c["batch_size"], c["protocol"]): c
        for c in cells
        if c["target"] == "gateway" and clean(c)
    }
    rows = []
    for (model, variant, conc, batch, protocol), c in index.items():
        if protocol != fast:
            continue
        other = index.get((model, variant, conc, batch, slow))
        if other is None:
            continue
        rows.append(
            {
                "model": model,
                "variant": variant,
                "concurrency": conc,
                "batch_size": batch,
                f"{fast}_p50_ms": c["p50_ms"],
                f"{slow}_p50_ms": other["p50_ms"],
                "speedup_p50": _ratio(other["p50_ms"], c["p50_ms"]),
                "speedup_rps": _ratio(c["rps"], other["rps"]),
            }
        )
    return rows

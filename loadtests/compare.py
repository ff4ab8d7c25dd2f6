"""Load tests: what changed between two bench reports (`servegate bench compare A B`).

Cells are matched by model, variant, target, protocol, concurrency and batch size. A
change counts when it exceeds the threshold (default 10 %, about the run-to-run noise
seen on a quiet 2-core machine): p50/p99 up or throughput down is worse, the reverse is
better; a cell that gained failures is worse whatever its speed. Versions and machine
differences are listed first, since they explain most changes.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtests.report import load, ms, num, table

Key = tuple[str, str, str, str, int, int]
METRICS = (("p50_ms", False), ("p99_ms", False), ("infer_per_s", True))  # (key, higher is better)


def key(cell: Mapping[str, Any]) -> Key:
    return (
        cell["model"], cell["variant"], cell["target"], cell["protocol"], cell["concurrency"],
        cell["batch_size"],
    )  # fmt: skip


@dataclass(frozen=True)
class Change:
    key: Key
    a: Mapping[str, Any]
    b: Mapping[str, Any]
    rel: dict[str, float | None]  # metric -> (b - a) / a
    verdict: str  # better | worse | same

    @property
    def name(self) -> str:
        model, variant, target, protocol, conc, batch = self.key
        return f"{model}@{variant} {target} {protocol} c={conc} b={batch}"


def _rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return (b - a) / a


def judge(a: Mapping[str, Any], b: Mapping[str, Any], threshold: float) -> tuple[dict, str]:
    """(relative change per metric, better/worse/same) for one matched cell."""
    rel = {m: _rel(a.get(m), b.get(m)) for m, _ in METRICS}
    if b.get("failures", 0) > 0 and a.get("failures", 0) == 0:
        return rel, "worse"
    if a.get("failures", 0) > 0 and b.get("failures", 0) == 0:
        return rel, "better"
    worse = better = False
    for metric, higher_better in METRICS:
        r = rel[metric]
        if r is None or abs(r) <= threshold:
            continue
        good = (r > 0) == higher_better
        better |= good
        worse |= not good
    return rel, "worse" if worse else "better" if better else "same"


def compare(a: Mapping[str, Any], b: Mapping[str, Any], threshold: float = 0.10) -> dict[str, Any]:
    """Matched cells with their changes, cells only in A or B, and environment differences."""
    cells_a = {key(c): c for c in a["cells"]}
    cells_b = {key(c): c for c in b["cells"]}
    changes = []
    for k in cells_a.keys() & cells_b.keys():
        rel, verdict = judge(cells_a[k], cells_b[k], threshold)
        changes.append(Change(k, cells_a[k], cells_b[k], rel, verdict))
    order = {k: i for i, k in enumerate([*cells_a, *cells_b])}
    changes.sort(key=lambda c: order[c.key])
    return {
        "changes": changes,
        "only_a": [k for k in cells_a if k not in cells_b],
        "only_b": [k for k in cells_b if k not in cells_a],
        "environment": env_diff(a["environment"], b["environment"]),
    }


def env_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(what, in A, in B) for each machine fact or package version that differs."""
    out = []
    for field in ("cpu_model", "logical_cores", "memory_gb", "gpu", "python", "java"):
        if a.get(field) != b.get(field):
            out.append((field, str(a.get(field)), str(b.get(field))))
    va, vb = a.get("versions", {}), b.get("versions", {})
    for pkg in sorted(va.keys() | vb.keys()):
        if va.get(pkg) != vb.get(pkg):
            out.append((pkg, va.get(pkg, "—"), vb.get(pkg, "—")))
    return out


def _pct(r: float | None) -> str:
    return "—" if r is None else f"{r:+.1%}"


def rows(result: Mapping[str, Any]) -> list[list[str]]:
    return [
        [
            c.name,
            f"{ms(c.a.get('p50_ms'))} → {ms(c.b.get('p50_ms'))} ({_pct(c.rel['p50_ms'])})",
            f"{ms(c.a.get('p99_ms'))} → {ms(c.b.get('p99_ms'))} ({_pct(c.rel['p99_ms'])})",
            f"{num(c.a.get('infer_per_s'))} → {num(c.b.get('infer_per_s'))} "
            f"({_pct(c.rel['infer_per_s'])})",
            f"{c.a.get('failures', 0)} → {c.b.get('failures', 0)}",
            c.verdict,
        ]
        for c in result["changes"]
    ]


HEADER = ("cell", "p50 ms", "p99 ms", "inferences/s", "failures", "verdict")


def markdown(result: Mapping[str, Any], a: str, b: str) -> str:
    counts = {v: sum(c.verdict == v for c in result["changes"]) for v in ("worse", "better")}
    parts = [
        f"# bench compare: {a} → {b}",
        f"{len(result['changes'])} matched cells: {counts['worse']} worse, "
        f"{counts['better']} better, the rest within the threshold.",
    ]
    if result["environment"]:
        parts.append(table(("what", "A", "B"), [list(r) for r in result["environment"]]))
    parts.append(table(HEADER, rows(result)))
    for label, keys in (("only in A", result["only_a"]), ("only in B", result["only_b"])):
        if keys:
            parts.append(f"{label}: " + ", ".join(" ".join(map(str, k)) for k in keys))
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="servegate bench compare", description="What changed between two bench reports."
    )
    parser.add_argument("a", type=Path, help="The earlier report folder (or its results.json).")
    parser.add_argument("b", type=Path, help="The later report folder (or its results.json).")
    parser.add_argument("--threshold", type=float, default=0.10, help="Relative change to count.")
    parser.add_argument("--markdown", type=Path, help="Also write the comparison here.")
    parser.add_argument(
        "--fail-on-worse", action="store_true", help="Exit 1 when any cell got worse (for CI)."
    )
    args = parser.parse_args(argv)
    result = compare(load(args.a), load(args.b), args.threshold)
    console = Console()
    if result["environment"]:
        env_table = Table("what changed", "A", "B", title="environment")
        for r in result["environment"]:
            env_table.add_row(*r)
        console.print(env_table)
    out = Table(*HEADER, title=f"{args.a} → {args.b}")
    style = {"worse": "red", "better": "green", "same": ""}
    for change, row in zip(result["changes"], rows(result), strict=True):
        out.add_row(*row, style=style[change.verdict])
    console.print(out)
    for label, keys in (("only in A", result["only_a"]), ("only in B", result["only_b"])):
        if keys:
            console.print(f"{label}: " + ", ".join(" ".join(map(str, k)) for k in keys))
    if args.markdown:
        args.markdown.write_text(markdown(result, str(args.a), str(args.b)))
    worse = any(c.verdict == "worse" for c in result["changes"])
    return 1 if worse and args.fail_on_worse else 0


if __name__ == "__main__":
    raise SystemExit(main())

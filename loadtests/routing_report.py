"""Load tests: the routing comparison's section of the bench report (pure: its JSON in).

A results.json may hold a `routing` object (written by `servegate bench routing`,
loadtests/routing.py): its settings, the fault injected, and one cell per round,
concurrency and policy. From it come two tables, the same rows in report.md, on the
page (loadtests/page.py) and on the console: every cell (latency, throughput, errors,
who answered, hedges and shadow copies), and every cell against the pinned baseline of
its round with the issue's goal judged; and one figure: p50 and p99 per policy, one
column per concurrency, one bar per round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

Routing = Mapping[str, Any]


def ms(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def num(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (as report.table; this module stays a leaf that report imports)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def concurrency_label(c: int) -> str:
    return "1 (sequential)" if c == 1 else str(c)


def _pct(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f} %"


def _answered_by(cell: Mapping[str, Any]) -> str:
    served = cell["answered_by"]
    total = sum(served.values()) or 1
    return ", ".join(f"{v} {100 * n / total:.1f} %" for v, n in served.items()) or "—"


def _hedges(cell: Mapping[str, Any]) -> str:
    h = cell["hedges"]
    if not any(h.values()):
        return "—"
    return (
        f"{h['sent']:.0f} ({_pct(cell['extra_calls'])}): won {h['won']:.0f}, lost "
        f"{h['lost']:.0f}, no budget {h['no_budget']:.0f}"
    )


def _shadows(cell: Mapping[str, Any]) -> str:
    s = {k: v for k, v in cell["shadows"].items() if v}
    if not s:
        return "—"
    parts = ", ".join(f"{k} {v:.0f}" for k, v in s.items())
    p = cell.get("parity") or {}
    if p.get("compared"):
        parts += f"; within 1e-4: {_pct(p.get('within_1e-4', 0) / p['compared'], 2)}"
    return parts


def _rows(cell: Mapping[str, Any]) -> str:
    per = cell["runner_rows_per_request"]
    return ", ".join(f"{v} {n:.3f}" for v, n in per.items()) or "—"


def _cpu(cell: Mapping[str, Any]) -> str:
    """CPU ms per request by process: what a policy costs where (hedges, shadow copies)."""
    per = cell.get("cpu_ms_per_request") or {}
    return ", ".join(f"{k} {v:.2f}" for k, v in per.items()) or "—"


def _load(cell: Mapping[str, Any]) -> str:
    la = cell.get("load_average") or []
    others = cell.get("others_cpu_pct")
    text = " ".join(f"{x:.2f}" for x in la) if la else "—"
    return text + (f" / {others:.0f}" if others is not None else "")


CELL_HEADER = (
    "round", "c", "policy", "requests", "errors", "ok/s", "p50 ms", "p90 ms", "p99 ms",
    "max ms", "answered by", "hedges sent (extra calls): outcomes", "shadow copies",
    "rows to runners / request", "CPU ms / request", "load avg 1m 5m / others CPU %",
)  # fmt: skip


def cell_rows(routing: Routing) -> list[list[str]]:
    rows = []
    for c in routing["cells"]:
        lat = c["latency_ms"]
        errors = ", ".join(f"{k} {n}" for k, n in c["errors"].items()) or "0"
        rows.append(
            [
                str(c["round"]), concurrency_label(c["concurrency"]), c["arm"],
                num(c["requests"]), errors, num(c["ok_per_s"]), ms(lat["p50"]),
                ms(lat["p90"]), ms(lat["p99"]), ms(lat["max"]), _answered_by(c), _hedges(c),
                _shadows(c), _rows(c), _cpu(c), _load(c),
            ]
        )  # fmt: skip
    return rows


COMPARE_HEADER = (
    "c", "round", "policy", "pinned p50 ms", "p50 ms", "p50 change", "pinned p99 ms",
    "p99 ms", "p99 lower by", "extra runner calls", "goal",
)  # fmt: skip


def compare_rows(routing: Routing) -> list[list[str]]:
    rows = []
    order = sorted(routing["comparisons"], key=lambda r: (r["concurrency"], r["arm"], r["round"]))
    for r in order:
        goal = r["goal"]
        verdict = "—" if goal is None else ("**met**: " if goal["met"] else "not met: ")
        extra = r["extra_calls"] if r["policy"] == "hedged" else r["shadow_copies"]
        rows.append(
            [
                concurrency_label(r["concurrency"]), str(r["round"]), r["arm"],
                ms(r["baseline_p50_ms"]), ms(r["p50_ms"]),
                "—" if r["p50_change"] is None else f"{100 * r['p50_change']:+.1f} %",
                ms(r["baseline_p99_ms"]), ms(r["p99_ms"]),
                "—" if r["p99_lower_x"] is None else f"{r['p99_lower_x']:.2f}x",
                _pct(extra), verdict + (goal["text"] if goal else ""),
            ]
        )  # fmt: skip
    return rows


def describe(routing: Routing) -> str:
    """The setting in one paragraph: model, variants, fault, load."""
    faults = "; ".join(
        f"{v}: " + ", ".join(f"{k}={x}" for k, x in f.items()) for v, f in routing["faults"].items()
    )
    s = routing["settings"]
    concs = ", ".join(concurrency_label(c) for c in s["concurrency"])
    return (
        f"`{routing['model']}`, primary `{routing['primary']}`, secondary "
        f"`{routing['secondary']}`; fault injected through the admin route: "
        f"{faults or 'none'}. Each cell: the policy set through `PUT /admin/models/"
        f"{routing['model']}/routing`, {s['warmup_s']:g} s unmeasured, then a closed loop of "
        f"c concurrent gRPC requests (batch {s['batch_size']}) for {s['duration_s']:g} s "
        f"(c = {concs}); rounds: {s['rounds']}, interleaved (round, then concurrency, then "
        f"policy). Hedges, shadow copies and rows to runners are the gateway's /metrics deltas "
        f"over the cell; 'extra runner calls' are hedges sent (hedged) or shadow copies "
        f"(mirror) per request. Baseline: `{routing['baseline']}`. Routing and faults were "
        f"restored afterwards{'' if not routing.get('restore_problems') else ' (with problems)'}."
    )


def markdown(routing: Routing) -> str:
    """The report.md section."""
    return "\n\n".join(
        [
            "## Routing policies",
            describe(routing),
            "### Against the pinned baseline",
            table(COMPARE_HEADER, compare_rows(routing)) if routing["comparisons"] else "None.",
            "### Every cell",
            table(CELL_HEADER, cell_rows(routing)),
        ]
    )


def figure(routing: Routing) -> go.Figure:
    """p50 and p99 (ms, log scale) per policy: one column per concurrency, a bar per round."""
    cells = routing["cells"]
    concs = sorted({c["concurrency"] for c in cells})
    arms = list(dict.fromkeys(c["arm"] for c in cells))
    rounds = sorted({c["round"] for c in cells})
    fig = make_subplots(
        rows=2, cols=max(1, len(concs)), vertical_spacing=0.12, horizontal_spacing=0.06,
        column_titles=[f"c = {concurrency_label(c)}" for c in concs], row_titles=["p50", "p99"],
    )  # fmt: skip
    palette = qualitative.Safe
    for j, conc in enumerate(concs, start=1):
        for k, rnd in enumerate(rounds):
            mine = {c["arm"]: c for c in cells if c["concurrency"] == conc and c["round"] == rnd}
            for i, key in enumerate(("p50", "p99"), start=1):
                fig.add_trace(
                    go.Bar(
                        x=arms, y=[mine[a]["latency_ms"][key] if a in mine else None for a in arms],
                        name=f"round {rnd}", legendgroup=f"round {rnd}",
                        showlegend=(i == 1 and j == 1), marker_color=palette[k % len(palette)],
                        hovertemplate=f"%{{x}} round {rnd}: %{{y:.3f}} ms<extra>{key}</extra>",
                    ),
                    row=i, col=j,
                )  # fmt: skip
    fig.update_yaxes(type="log", title_text="ms", col=1)
    fig.update_yaxes(type="log")
    fig.update_layout(
        template="plotly_white", barmode="group", height=620,
        margin={"l": 60, "r": 20, "t": 60, "b": 50}, legend={"orientation": "h", "y": -0.2},
    )  # fmt: skip
    return fig

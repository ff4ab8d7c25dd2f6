"""Load tests: the report's plotly figures, built from results.json's cells.

One function per plot kind, each returning `(id, title, figure)` per model and batch
size: latency percentiles, throughput against concurrency, latency distributions, the
gateway's overhead, resource use; plus cold start. Colours are fixed per protocol
(bars) and per variant (lines) across every figure, so a reader learns them once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from loadtests import analysis
from loadtests.latency import bin_edges

Cell = Mapping[str, Any]
Plot = tuple[str, str, go.Figure]

SERIES = ("http-json", "http-binary", "grpc", "direct")
SERIES_COLOR = dict(zip(SERIES, ("#EF553B", "#FFA15A", "#636EFA", "#00CC96"), strict=True))
SERIES_DASH = {"http-json": "dot", "http-binary": "dash", "grpc": "solid", "direct": "dashdot"}
LAYOUT = {
    "template": "plotly_white",
    "font": {"size": 12},
    "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
    "legend": {"orientation": "h", "y": -0.15},
}


def series(cell: Cell) -> str:
    """A cell's series: the gateway protocol, or `direct` (the runner's own gRPC)."""
    return analysis.verdict_group(cell)


def _variants(cells: Sequence[Cell]) -> list[str]:
    return list(dict.fromkeys(c["variant"] for c in cells))


def _variant_colors(cells: Sequence[Cell]) -> dict[str, str]:
    palette = qualitative.Bold
    return {v: palette[i % len(palette)] for i, v in enumerate(_variants(cells))}


def groups(cells: Sequence[Cell]) -> Iterator[tuple[str, int, list[Cell]]]:
    """(model, batch size, its cells) in the order the cells ran."""
    seen: dict[tuple[str, int], list[Cell]] = {}
    for c in cells:
        seen.setdefault((c["model"], c["batch_size"]), []).append(c)
    for (model, batch), members in seen.items():
        yield model, batch, members


def _concurrencies(cells: Sequence[Cell]) -> list[int]:
    return sorted({c["concurrency"] for c in cells})


def _present(cells: Sequence[Cell]) -> list[str]:
    found = {series(c) for c in cells}
    return [s for s in SERIES if s in found]


def latency_percentiles(model: str, batch: int, cells: Sequence[Cell]) -> Plot:
    concs = _concurrencies(cells)
    rows = ("p50_ms", "p90_ms", "p99_ms")
    fig = make_subplots(
        rows=3, cols=len(concs), shared_yaxes=False, vertical_spacing=0.08,
        column_titles=[f"concurrency {c}" for c in concs], row_titles=["p50", "p90", "p99"],
    )  # fmt: skip
    for s in _present(cells):
        for j, conc in enumerate(concs, start=1):
            mine = [c for c in cells if series(c) == s and c["concurrency"] == conc]
            for i, key in enumerate(rows, start=1):
                fig.add_trace(
                    go.Bar(
                        x=[c["variant"] for c in mine],
                        y=[c.get(key) for c in mine],
                        name=s,
                        legendgroup=s,
                        showlegend=(i == 1 and j == 1),
                        marker_color=SERIES_COLOR[s],
                        hovertemplate=f"{s} %{{x}}: %{{y:.3f}} ms<extra>{key[:-3]}</extra>",
                    ),
                    row=i,
                    col=j,
                )
    fig.update_yaxes(title_text="ms", col=1)
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(LAYOUT, barmode="group", height=760)
    return (f"latency-{model}-b{batch}", f"{model}, batch {batch}: latency percentiles", fig)


def throughput(model: str, batch: int, cells: Sequence[Cell]) -> Plot:
    colors = _variant_colors(cells)
    fig = go.Figure()
    for v in _variants(cells):
        for s in _present(cells):
            mine = sorted(
                (c for c in cells if c["variant"] == v and series(c) == s and c["requests"]),
                key=lambda c: c["concurrency"],
            )
            if not mine:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[c["concurrency"] for c in mine],
                    y=[c["infer_per_s"] for c in mine],
                    mode="lines+markers",
                    name=f"{v} · {s}",
                    line={"color": colors[v], "dash": SERIES_DASH[s]},
                    hovertemplate=f"{v} {s} c=%{{x}}: %{{y:,.0f}} inferences/s<extra></extra>",
                )
            )
    fig.update_xaxes(type="log", title_text="concurrent users", tickvals=_concurrencies(cells))
    fig.update_yaxes(title_text="inferences / s (good answers)", rangemode="tozero")
    fig.update_layout(LAYOUT, height=480)
    return (f"throughput-{model}-b{batch}", f"{model}, batch {batch}: throughput", fig)


def distributions(model: str, batch: int, cells: Sequence[Cell]) -> Plot:
    colors = _variant_colors(cells)
    concs = _concurrencies(cells)
    fig = make_subplots(rows=1, cols=len(concs), column_titles=[f"c={c}" for c in concs])
    for j, conc in enumerate(concs, start=1):
        for c in cells:
            hist = c.get("histogram")
            if c["concurrency"] != conc or not hist or not hist["counts"]:
                continue
            edges, counts = bin_edges(hist), hist["counts"]
            total = sum(counts) or 1
            s = series(c)
            fig.add_trace(
                go.Scatter(
                    x=[(edges[k] * edges[k + 1]) ** 0.5 for k in range(len(counts))],
                    y=[n / total for n in counts],
                    mode="lines",
                    line={"color": colors[c["variant"]], "dash": SERIES_DASH[s], "shape": "hvh"},
                    name=f"{c['variant']} · {s}",
                    legendgroup=f"{c['variant']} · {s}",
                    showlegend=j == 1,
                    hovertemplate="%{x:.3f} ms: %{y:.1%}<extra>" + f"{c['variant']} {s}</extra>",
                ),
                row=1,
                col=j,
            )
    fig.update_xaxes(type="log", title_text="latency ms")
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    fig.update_yaxes(title_text="share of requests", col=1)
    fig.update_layout(LAYOUT, height=480)
    return (f"distribution-{model}-b{batch}", f"{model}, batch {batch}: latency distribution", fig)


def gateway_overhead(model: str, batch: int, cells: Sequence[Cell]) -> Plot:
    rows = analysis.overhead(cells)
    concs = _concurrencies(cells)
    fig = make_subplots(
        rows=2, cols=len(concs), vertical_spacing=0.12,
        column_titles=[f"concurrency {c}" for c in concs],
        row_titles=["+p50 ms over direct", "throughput gateway / direct"],
    )  # fmt: skip
    for s in ("http-json", "http-binary", "grpc"):
        for j, conc in enumerate(concs, start=1):
            mine = [r for r in rows if r["protocol"] == s and r["concurrency"] == conc]
            if not mine:
                continue
            for i, key in enumerate(("delta_p50_ms", "throughput_ratio"), start=1):
                fig.add_trace(
                    go.Bar(
                        x=[r["variant"] for r in mine],
                        y=[r[key] for r in mine],
                        customdata=[[r["ratio_p50"] or 0] for r in mine],
                        name=s,
                        legendgroup=s,
                        showlegend=(i == 1 and j == 1),
                        marker_color=SERIES_COLOR[s],
                        hovertemplate=(
                            f"{s} %{{x}}: %{{y:.3f}} (p50 ratio %{{customdata[0]:.2f}}x)"
                            "<extra></extra>"
                        ),
                    ),
                    row=i,
                    col=j,
                )
    for j in range(1, len(concs) + 1):
        fig.add_hline(y=1.0, line_dash="dot", line_color="grey", row=2, col=j)
    fig.update_layout(LAYOUT, barmode="group", height=620)
    return (f"overhead-{model}-b{batch}", f"{model}, batch {batch}: the gateway's overhead", fig)


def resource_use(model: str, batch: int, cells: Sequence[Cell]) -> Plot:
    labels: list[str] = []
    for c in cells:
        for label in c.get("cpu_ms_per_request") or {}:
            if label not in labels:
                labels.append(label)
    x = [f"{c['variant']} · {series(c)} · c={c['concurrency']}" for c in cells]
    fig = make_subplots(
        rows=2, cols=1, vertical_spacing=0.08, shared_xaxes=True,
        subplot_titles=("CPU ms per request, by process", "RSS MB (mean over the cell)"),
    )  # fmt: skip
    palette = qualitative.Pastel
    for k, label in enumerate(labels):
        color = palette[k % len(palette)]
        fig.add_trace(
            go.Bar(
                x=x,
                y=[(c.get("cpu_ms_per_request") or {}).get(label) for c in cells],
                name=label,
                legendgroup=label,
                marker_color=color,
                hovertemplate="%{x}: %{y:.3f} ms CPU/request<extra>" + label + "</extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                x=x,
                y=[(c.get("resources") or {}).get(label, {}).get("rss_mb") for c in cells],
                name=label,
                legendgroup=label,
                showlegend=False,
                marker_color=color,
                hovertemplate="%{x}: %{y:.0f} MB<extra>" + label + "</extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_layout(LAYOUT, barmode="stack", height=760)
    fig.update_xaxes(tickangle=-45)
    return (f"resources-{model}-b{batch}", f"{model}, batch {batch}: resource use", fig)


PER_GROUP = (latency_percentiles, throughput, distributions, gateway_overhead, resource_use)


def cold_start(doc: Mapping[str, Any]) -> Plot:
    cold = doc.get("cold_start", {})
    runners = cold.get("runners", {})
    first = cold.get("first_request_ms", {})
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "runner start to ready, alone (s)",
            "first request through the gateway (ms)",
        ),
    )
    fig.add_trace(
        go.Bar(x=list(runners), y=[r.get("ready_after_s") for r in runners.values()]),
        row=1,
        col=1,
    )
    fig.add_trace(go.Bar(x=list(first), y=list(first.values())), row=1, col=2)
    fig.update_layout(LAYOUT, showlegend=False, height=380)
    return ("cold-start", "Cold start", fig)


def all_plots(doc: Mapping[str, Any]) -> list[Plot]:
    """Every figure of a report, in page order."""
    out: list[Plot] = []
    for model, batch, cells in groups(doc["cells"]):
        out += [make(model, batch, cells) for make in PER_GROUP]
    out.append(cold_start(doc))
    return out


def plot_ids(doc: Mapping[str, Any]) -> list[str]:
    """The ids `all_plots` gives, without building figures (what a test expects to find)."""
    ids = [
        f"{kind}-{model}-b{batch}"
        for model, batch, _ in groups(doc["cells"])
        for kind in ("latency", "throughput", "distribution", "overhead", "resources")
    ]
    return [*ids, "cold-start"]

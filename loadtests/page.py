"""Load tests: index.html, one self-contained page (plotly.js inlined, no CDN, no other file).

Rendered from results.json alone with the Jinja template in templates/: the verdict
table first, then each model and batch size's plots, the gateway's overhead, cold start,
every cell, and the environment it ran on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape
from plotly.offline import get_plotlyjs

from loadtests import analysis, plots, report, routing_report

TEMPLATES = Path(__file__).parent / "templates"
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_NUMERIC = re.compile(r"^[—\-+]?[\d,.]+( ?(ms|x|s|%))?$")


def html_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], *, numbers: bool = True
) -> Markup:
    """An HTML table from report.py's rows (`**x**` becomes bold, numbers align right);
    an all-empty header gives no header row."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header) if any(header) else ""
    body = []
    for row in rows:
        cells = []
        for value in row:
            text = _BOLD.sub(r"<b>\1</b>", str(escape(value)))
            cls = ' class="num"' if numbers and _NUMERIC.match(value) else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return Markup(f"<table>{thead}<tbody>{''.join(body)}</tbody></table>")


def cards(doc: Mapping[str, Any]) -> list[dict[str, str]]:
    """The headline figures: per model, the fastest and the highest-throughput variant over
    gRPC, and the gateway's p50 overhead at the lowest concurrency."""
    out = []
    verdicts = analysis.verdicts(doc["cells"])
    overhead = analysis.overhead(doc["cells"])
    for model in dict.fromkeys(c["model"] for c in doc["cells"]):
        mine = [v for v in verdicts if v["model"] == model and v["protocol"] == "grpc"]
        if mine:
            low = min(mine, key=lambda v: (v["batch_size"], v["concurrency"]))
            high = max(mine, key=lambda v: (v["concurrency"], -v["batch_size"]))
            if low["fastest_p50"]:
                best = low["fastest_p50"]
                out.append(
                    {
                        "k": f"{model}: fastest p50, gRPC, c={low['concurrency']}",
                        "v": f"{best['variant']} · {best['value']:.3f} ms",
                    }
                )
            if high["highest_throughput"]:
                best = high["highest_throughput"]
                out.append(
                    {
                        "k": f"{model}: most inferences/s, gRPC, c={high['concurrency']}",
                        "v": f"{best['variant']} · {best['value']:,.0f}/s",
                    }
                )
        rows = [o for o in overhead if o["model"] == model and o["protocol"] == "grpc"]
        if rows:
            low_c = min(o["concurrency"] for o in rows)
            ratios = [o["ratio_p50"] for o in rows if o["concurrency"] == low_c]
            out.append(
                {
                    "k": f"{model}: gateway p50 / direct, gRPC, c={low_c}",
                    "v": f"{min(ratios):.2f}x - {max(ratios):.2f}x",
                }
            )
    return out


def render(doc: Mapping[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, keep_trailing_newline=True
    )
    figures = []
    for plot_id, title, fig in plots.all_plots(doc):
        group = None
        for model, batch, _ in plots.groups(doc["cells"]):
            if plot_id.endswith(f"-{model}-b{batch}"):
                group = (model, batch)
        html = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=plot_id,
            config={"displaylogo": False, "responsive": True},
        )
        figures.append({"id": plot_id, "title": title, "group": group, "html": Markup(html)})
    environment = doc["environment"]
    gpu = environment.get("gpu")
    tables = {
        "verdicts": html_table(report.VERDICT_HEADER, report.verdict_rows(doc)),
        "overhead": html_table(report.OVERHEAD_HEADER, report.overhead_rows(doc)),
        "speedup": html_table(report.SPEEDUP_HEADER, report.speedup_rows(doc)),
        "cold": html_table(report.COLD_HEADER, report.cold_rows(doc)),
        "first": html_table(
            ("variant", "first request through the gateway ms"), report.first_request_rows(doc)
        ),
        "cells": html_table(report.CELL_HEADER, report.cell_rows(doc)),
        "environment": html_table(
            ("", ""), report.environment_rows(environment, doc["settings"]), numbers=False
        ),
    }
    failures = [
        {
            "id": c["id"],
            "failures": c["failures"],
            "requests": c["requests"],
            "errors": "; ".join(f"{k} x{n}" for k, n in c["errors"].items()),
        }
        for c in doc["cells"]
        if c["failures"] or c["requests"] == 0
    ]
    routing, routing_plot = doc.get("routing"), Markup("")
    if routing:  # `servegate bench routing` (loadtests/routing_report.py)
        tables["routing_compare"] = html_table(
            routing_report.COMPARE_HEADER, routing_report.compare_rows(routing)
        )
        tables["routing_cells"] = html_table(
            routing_report.CELL_HEADER, routing_report.cell_rows(routing)
        )
        routing_plot = Markup(
            routing_report.figure(routing).to_html(
                full_html=False, include_plotlyjs=False, div_id="routing-latency",
                config={"displaylogo": False, "responsive": True},
            )
        )  # fmt: skip
    return env.get_template("report.html.j2").render(
        doc=doc,
        routing=routing,
        routing_plot=routing_plot,
        routing_text=routing_report.describe(routing) if routing else "",
        env=environment,
        gpu_text=", ".join(g["name"] for g in gpu["gpus"]) if gpu else "none",
        groups=[(m, b) for m, b, _ in plots.groups(doc["cells"])],
        plots=figures,
        tables=tables,
        cards=cards(doc),
        failures=failures,
        variant_settings=json.dumps(doc.get("variant_settings", {}), indent=1),
        plotly_js=Markup(get_plotlyjs()),
    )


def write(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(doc), encoding="utf-8")
    tmp.replace(path)

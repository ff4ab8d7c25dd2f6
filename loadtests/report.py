"""Load tests: the bench's written outputs: results.json and report.md (same tables as the page).

`results.json` is the machine-readable record (`schema`, `environment`, `settings`,
`cold_start`, `cells`); everything else, the Markdown here and the HTML page
(loadtests/html.py), is derived from it, so a report can be re-rendered from the JSON
alone (`python -m loadtests.bench render DIR`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtests import analysis, routing_report
from loadtests.results import SCHEMA

Doc = Mapping[str, Any]


def write_json(path: Path, doc: Doc) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False))
    tmp.replace(path)


def load(path: Path) -> dict[str, Any]:
    """A results.json (or the report folder holding one); refuses another schema."""
    if path.is_dir():
        path = path / "results.json"
    doc: dict[str, Any] = json.loads(path.read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {doc.get('schema')!r}, this code reads {SCHEMA}")
    return doc


def ms(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def num(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _pick(best: Mapping[str, Any] | None, fmt: Any) -> str:
    return "—" if best is None else f"**{best['variant']}** ({fmt(best['value'])})"


def verdict_rows(doc: Doc) -> list[list[str]]:
    return [
        [
            v["model"], str(v["batch_size"]), str(v["concurrency"]), v["protocol"],
            _pick(v["fastest_p50"], lambda x: f"{x:.3f} ms"),
            _pick(v["fastest_p99"], lambda x: f"{x:.3f} ms"),
            _pick(v["highest_throughput"], lambda x: f"{x:,.0f} inf/s"),
            ", ".join(v["failing"]) or "",
        ]
        for v in analysis.verdicts(doc["cells"])
    ]  # fmt: skip


VERDICT_HEADER = (
    "model", "batch", "concurrency", "protocol", "fastest at p50", "fastest at p99",
    "highest throughput", "failing",
)  # fmt: skip


def overhead_rows(doc: Doc) -> list[list[str]]:
    return [
        [
            o["model"], o["variant"], o["protocol"], f"{o['direct_wire']} gRPC",
            str(o["concurrency"]), str(o["batch_size"]),
            ms(o["gateway_p50_ms"]), ms(o["direct_p50_ms"]), ms(o["delta_p50_ms"]),
            ratio(o["ratio_p50"]), ms(o["delta_p99_ms"]), ratio(o["throughput_ratio"]),
        ]
        for o in analysis.overhead(doc["cells"])
    ]  # fmt: skip


OVERHEAD_HEADER = (
    "model", "variant", "gateway protocol", "direct", "c", "batch", "gateway p50 ms",
    "direct p50 ms", "+p50 ms", "p50 ratio", "+p99 ms", "throughput gw/direct",
)  # fmt: skip


def _cpu(cell: Doc, prefix: str) -> str:
    per = cell.get("cpu_ms_per_request") or {}
    total = sum(v for k, v in per.items() if k == prefix or k.startswith(prefix + "/"))
    return ms(total, 2) if per else "—"


def cell_rows(doc: Doc) -> list[list[str]]:
    rows = []
    for c in doc["cells"]:
        runner = runner_label(doc, c)
        rows.append(
            [
                c["model"], c["variant"], c["target"],
                c["protocol"] if c["target"] == "gateway" else f"{c['wire']} gRPC",
                str(c["concurrency"]), str(c["batch_size"]), num(c["requests"]),
                num(c["failures"]), num(c["infer_per_s"]), ms(c.get("p50_ms")),
                ms(c.get("p90_ms")), ms(c.get("p99_ms")), _cpu(c, "gateway"),
                _cpu(c, runner) if runner else "—", _cpu(c, "locust"), _other(c),
            ]
        )  # fmt: skip
    return rows


CELL_HEADER = (
    "model", "variant", "target", "protocol", "c", "batch", "requests", "failures",
    "infer/s", "p50 ms", "p90 ms", "p99 ms", "gateway CPU ms/req", "runner CPU ms/req",
    "client CPU ms/req", "other load %",
)  # fmt: skip


def _other(cell: Doc) -> str:
    """CPU % (of one core) that processes outside the bench used during the cell."""
    machine = (cell.get("resources") or {}).get("_machine")
    return num(machine["other_cpu_pct"]) if machine else "—"


def runner_label(doc: Doc, cell: Doc) -> str | None:
    """The resource label of the runner serving a cell's variant (its runner kind)."""
    kinds: Mapping[str, str] = doc.get("variant_runners", {})
    return kinds.get(f"{cell['model']}@{cell['variant']}")


def speedup_rows(doc: Doc) -> list[list[str]]:
    return [
        [
            s["model"], s["variant"], str(s["concurrency"]), str(s["batch_size"]),
            ms(s["http-binary_p50_ms"]), ms(s["http-json_p50_ms"]), ratio(s["speedup_p50"]),
            ratio(s["speedup_rps"]),
        ]
        for s in analysis.protocol_speedup(doc["cells"], "http-binary", "http-json")
    ]  # fmt: skip


SPEEDUP_HEADER = (
    "model", "variant", "c", "batch", "binary p50 ms", "JSON p50 ms", "binary speed-up (p50)",
    "binary throughput x",
)  # fmt: skip


def cold_rows(doc: Doc) -> list[list[str]]:
    rows = []
    for kind, r in doc.get("cold_start", {}).get("runners", {}).items():
        first = ", ".join(f"{k} {v:.1f}" for k, v in r.get("first_request_ms", {}).items())
        rows.append(
            [
                kind,
                r.get("description") or "",
                ms(r.get("ready_after_s"), 2),
                first or "—",
                r.get("error", ""),
            ]
        )
    return rows


COLD_HEADER = ("runner", "what serves it", "start to ready s", "first direct request ms", "error")


def first_request_rows(doc: Doc) -> list[list[str]]:
    first = doc.get("cold_start", {}).get("first_request_ms", {})
    return [[name, ms(v, 1) if v is not None else "failed"] for name, v in first.items()]


def environment_rows(env: Doc, settings: Doc) -> list[list[str]]:
    gpu = env.get("gpu")
    gpu_text = (
        "; ".join(f"{g['name']} ({g['memory_mb']} MB)" for g in gpu["gpus"])
        + f", driver {gpu['driver']}"
        if gpu
        else "none"
    )
    rows = [
        ["CPU", f"{env['cpu_model']} — {env['logical_cores']} logical / "
                f"{env['physical_cores']} physical cores"],
        ["memory", f"{env['memory_gb']} GB"],
        ["GPU", gpu_text],
        ["OS / Python", f"{env['os']} / {env['python']}"],
        ["load average at start", " ".join(str(x) for x in env["load_average_at_start"])],
        ["Java", env.get("java") or "—"],
        ["versions", ", ".join(f"{k} {v}" for k, v in env["versions"].items())],
    ]  # fmt: skip
    rows += [[f"setting: {k}", str(v)] for k, v in settings.items()]
    return rows


def markdown(doc: Doc) -> str:
    """report.md: the matrix's sections (when it has cells), the routing comparison's (when
    the document has one: loadtests/routing_report.py), then the environment."""
    matrix = [
        f"Preset `{doc['settings'].get('preset')}`, {len(doc['cells'])} cells. "
        "Latencies are exact (every request timed); throughput counts good answers only; "
        "a cell with failures never wins a verdict. Load generator, gateway and runners share "
        "this machine's cores, so compare cells within one report; `other load %` is the CPU "
        "that processes outside the bench used meanwhile (100 = one core).",
        "## Verdicts",
        table(VERDICT_HEADER, verdict_rows(doc)),
        "## Gateway overhead (gateway minus direct-to-runner, same load)",
        table(OVERHEAD_HEADER, overhead_rows(doc)) if overhead_rows(doc) else "No pairs.",
        "## HTTP binary versus JSON",
        table(SPEEDUP_HEADER, speedup_rows(doc)) if speedup_rows(doc) else "No pairs.",
        "## Cold start",
        "Each runner started alone, then one request straight to it (when measured), and "
        "each variant's first request through the gateway once the whole system was up.",
        table(COLD_HEADER, cold_rows(doc)),
        table(("variant", "first request through the gateway ms"), first_request_rows(doc)),
        "## All cells",
        table(CELL_HEADER, cell_rows(doc)),
        "## Failures",
        "\n".join(
            f"- `{c['id']}`: {c['failures']} of {c['requests']}: "
            + "; ".join(f"{k} x{n}" for k, n in c["errors"].items())
            for c in doc["cells"]
            if c["failures"] or c["requests"] == 0
        )
        or "None.",
    ]
    parts = [f"# servegate bench — {doc['created']}"]
    parts += matrix if doc["cells"] or not doc.get("routing") else []
    parts += [routing_report.markdown(doc["routing"])] if doc.get("routing") else []
    parts += [
        "## Environment",
        table(("", ""), environment_rows(doc["environment"], doc["settings"])),
    ]
    return "\n\n".join(parts) + "\n"

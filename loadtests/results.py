"""Load tests: one cell's result, from the files its Locust run left behind.

The locustfile's summary (`<prefix>_summary.json`: final counts, exact percentiles, a
histogram) is the primary source; Locust's own `<prefix>_stats.csv` and
`<prefix>_failures.csv` fill in when the summary is missing (a run that crashed) and
give the failure messages. Pure: files in, a dict out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadtests.latency import PERCENTILES, percentile_key
from loadtests.matrix import Cell

SCHEMA = 1
TOP_ERRORS = 5


def parse_stats_csv(path: Path) -> dict[str, Any] | None:
    """The `Aggregated` row of a Locust `_stats.csv`: counts, rate and (whole-ms) percentiles."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return None
    for row in rows:
        if row.get("Name") == "Aggregated":
            requests = int(row["Request Count"])
            return {
                "requests": requests,
                "failures": int(row["Failure Count"]),
                "rps": float(row["Requests/s"]) - float(row["Failures/s"]),
                "p50_ms": _ms(row.get("50%"), requests),
                "p90_ms": _ms(row.get("90%"), requests),
                "p99_ms": _ms(row.get("99%"), requests),
                "p99.9_ms": _ms(row.get("99.9%"), requests),
                "mean_ms": _ms(row.get("Average Response Time"), requests),
            }
    return None


def _ms(value: str | None, requests: int) -> float | None:
    if value in (None, "", "N/A") or requests == 0:
        return None
    return float(value)


def parse_failures_csv(path: Path) -> dict[str, int]:
    """Error message -> occurrences, from a Locust `_failures.csv`."""
    try:
        with open(path, newline="") as f:
            return {row["Error"]: int(row["Occurrences"]) for row in csv.DictReader(f)}
    except (OSError, KeyError, ValueError):
        return {}


def top_errors(errors: Mapping[str, int], n: int = TOP_ERRORS) -> dict[str, int]:
    return dict(sorted(errors.items(), key=lambda kv: -kv[1])[:n])


def cell_result(
    cell: Cell,
    prefix: Path,
    *,
    resources: Mapping[str, Any],
    exit_code: int | None,
    relative_to: Path,
) -> dict[str, Any]:
    """results.json's entry for one cell. `prefix` is the Locust --csv prefix."""
    doc: dict[str, Any] = {
        "id": cell.id,
        "model": cell.model,
        "variant": cell.variant,
        "protocol": cell.protocol,
        "wire": cell.wire,
        "target": cell.target,
        "concurrency": cell.concurrency,
        "batch_size": cell.batch_size,
    }
    summary = _read_json(Path(f"{prefix}_summary.json"))
    csv_row = parse_stats_csv(Path(f"{prefix}_stats.csv"))
    errors = parse_failures_csv(Path(f"{prefix}_failures.csv"))
    if summary is not None:
        doc.update(
            source="summary",
            requests=int(summary["requests"]),
            failures=int(summary["locust_failures"]),
            rps=float(summary["ok_per_s"]),
            window_s=float(summary["window_s"]),
            **{percentile_key(q): summary.get(percentile_key(q)) for q in PERCENTILES},
            mean_ms=summary.get("mean_ms"),
            min_ms=summary.get("min_ms"),
            max_ms=summary.get("max_ms"),
            histogram=summary.get("histogram"),
        )
        errors = summary.get("errors") or errors  # the same failures, as str() not repr()
    elif csv_row is not None:
        doc.update(source="locust-csv", **csv_row, histogram=None)
    else:
        doc.update(source="none", requests=0, failures=0, rps=0.0, histogram=None)
        doc.update({percentile_key(q): None for q in PERCENTILES})
        errors = errors or {f"no statistics, the Locust run failed: {_last_line(prefix)}": 1}
    doc["infer_per_s"] = doc["rps"] * cell.batch_size
    doc["errors"] = top_errors(errors)
    doc["resources"] = dict(resources)
    doc["cpu_ms_per_request"] = cpu_per_request(resources, doc["requests"])
    doc["exit_code"] = exit_code
    doc["csv_prefix"] = str(prefix.relative_to(relative_to))
    return doc


def cpu_per_request(resources: Mapping[str, Any], requests: int) -> dict[str, float]:
    """label -> CPU milliseconds spent per request in the measured window."""
    if requests <= 0:
        return {}
    return {
        label: round(1000.0 * row["cpu_s"] / requests, 4)
        for label, row in resources.items()
        if not label.startswith("_") and "cpu_s" in row
    }


def _last_line(prefix: Path) -> str:
    """The last line of a cell's Locust log: usually the error that stopped it."""
    try:
        lines = Path(f"{prefix}.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None

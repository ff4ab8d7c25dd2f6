"""Load tests: the recovery benchmark's figures and table (pure: outcomes in, figures out).

A runner is SIGKILLed at `kill_s` (seconds on the outcomes' clock) while steady load
runs. *Recovered* is the end of the first successful request sent after the kill:
only a request that started after the kill proves that the variant serves again (one
sent before may have been answered before the runner died). *Failed meanwhile* are the
requests that ended without success between the kill and that moment (or the end of
the run, without recovery), by code; requests that still failed after recovery are
counted apart (a flapping variant).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from loadtests.arrivals import Outcome


def figures(outcomes: Sequence[Outcome], kill_s: float, within_s: float) -> dict[str, Any]:
    """What happened around one kill; every sent request is in exactly one of
    ok_before + failed_before + failed_meanwhile + failed_after + ok_after."""
    first_ok = min(
        (o.done_s for o in outcomes if o.kind == "ok" and o.sent_s >= kill_s), default=None
    )
    recovered = first_ok if first_ok is not None and first_ok - kill_s <= within_s else None
    before = [o for o in outcomes if o.done_s < kill_s]
    after = [o for o in outcomes if o.done_s >= kill_s]
    until = recovered if recovered is not None else float("inf")
    meanwhile = [o for o in after if o.kind != "ok" and o.done_s <= until]
    later = [o for o in after if o.kind != "ok" and o.done_s > until]
    return {
        "kill_s": kill_s,
        "within_s": within_s,
        "recovered": recovered is not None,
        "recovered_after_s": None if recovered is None else recovered - kill_s,
        "sent": len(outcomes),
        "ok_before": sum(o.kind == "ok" for o in before),
        "failed_before": sum(o.kind != "ok" for o in before),
        "failed_meanwhile": len(meanwhile),
        "failed_meanwhile_by_code": dict(sorted(Counter(o.code for o in meanwhile).items())),
        "failed_after": len(later),
        "failed_after_by_code": dict(sorted(Counter(o.code for o in later).items())),
        "ok_after": sum(o.kind == "ok" for o in after),
        "unanswered": sum(o.kind == "unanswered" for o in outcomes),
    }


def verdict(row: dict[str, Any]) -> str:
    """The recovery in words: "0.84 s", "not recovered within 5 s", or why it did not run."""
    if row.get("skipped"):
        return f"skipped: {row['skipped']}"
    if row["recovered"]:
        return f"{row['recovered_after_s']:.2f} s"
    return f"not recovered within {row['within_s']:g} s"


def _codes(by_code: dict[str, int]) -> str:
    return ", ".join(f"{c} {n}" for c, n in by_code.items()) or "-"


def table(doc: dict[str, Any]) -> Table:
    t = Table(
        "runner", "variant", "killed", "recovered after", "failed meanwhile", "failed after",
        "unanswered", "restarts (/metrics)",
        title=f"recovery after SIGKILL under {doc['settings']['rate']:g} requests/s (gRPC)",
    )  # fmt: skip
    for row in doc["runners"]:
        if row.get("skipped"):
            t.add_row(row["kind"], row.get("variant", "-"), "-", verdict(row), *["-"] * 4)
            continue
        restarts = row["restarts_after"] - row["restarts_before"]
        t.add_row(
            row["kind"], row["variant"], f"{row['killed']['name']} {row['killed']['pid']}",
            verdict(row), _codes(row["failed_meanwhile_by_code"]),
            _codes(row["failed_after_by_code"]), str(row["unanswered"]),
            f"+{restarts:g} (total {row['restarts_after']:g})",
            style="red" if row["unanswered"] else None if row["recovered"] else "yellow",
        )  # fmt: skip
    return t

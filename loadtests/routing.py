"""Load tests: routing policies compared under an injected fault (`servegate bench routing`).

    servegate bench routing                                  # starts servegate up (onnx, jax)
    servegate bench routing --fault onnx:delay_ms=50,delay_percent=10 \\
        --policy pinned --policy hedged:after_ms=15 --policy hedged:after=p90 --concurrency 1,16
    servegate bench routing --url http://127.0.0.1:8000 --grpc-address 127.0.0.1:8001 ...

Against its own `servegate up` (the runners of the variants named) or a running gateway,
it injects each `--fault` through the admin route, then for each round, concurrency and
`--policy` (loadtests/routing_specs.py) sets the policy through `PUT /admin/models/{m}/
routing`, warms it up, and drives a closed loop of c concurrent gRPC requests (c=1 is
sequential: the tail without queueing). Per cell: p50/p90/p99, throughput, errors, which
variant answered, hedges and shadow copies from /metrics (loadtests/routing_figures.py).
Rounds interleave every policy at one concurrency, so the machine's noise hits the
policies alike. The routing and faults in force before are put back at the end, always.
The report (results.json, report.md, index.html) goes to `reports/routing-<time>/`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import uvloop
from rich.table import Table

from gateway.config import DEFAULT_REPOSITORY, ModelConfig, load_repository
from loadtests import arrivals, loadgen, machine, options, page, report, target, workload
from loadtests.arrivals import CLIENT_ERROR_PREFIX
from loadtests.resources import Sampler
from loadtests.results import SCHEMA, cpu_per_request
from loadtests.routing_admin import Admin
from loadtests.routing_figures import cell_figures, comparisons, delta, router_counters
from loadtests.routing_report import CELL_HEADER, COMPARE_HEADER, cell_rows, compare_rows
from loadtests.routing_sender import VariantGrpcSender
from loadtests.routing_specs import DEFAULT_POLICIES, Arm, baseline, parse_arms, parse_fault
from loadtests.system import System

console = options.console(240)
SETTLE_S = 2.0  # at most this long for shadow copies still in flight after a cell


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="servegate bench routing",
        description="Routing policies compared under an injected fault (issue 13's benchmark).",
    )
    p.add_argument("--model", default="digits")
    p.add_argument("--primary", help="The default variant (default: model.yaml's).")
    p.add_argument("--secondary", help="Hedge / shadow / canary (default: jax, or the next).")
    p.add_argument(
        "--policy", action="append", metavar="NAME[:key=value,...]",
        help=f"Repeatable (default: {' '.join(DEFAULT_POLICIES)}).",
    )  # fmt: skip
    p.add_argument(
        "--fault", action="append", default=[], metavar="VARIANT:key=value,...",
        help="e.g. onnx:delay_ms=50,delay_percent=10 (repeatable; default: none).",
    )  # fmt: skip
    p.add_argument("--concurrency", type=options.ints, default=(1, 16), help="c=1 is sequential.")
    p.add_argument("--duration", type=float, default=5.0, help="Measured seconds per cell.")
    p.add_argument("--warmup", type=float, default=1.0, help="Unmeasured seconds per cell.")
    p.add_argument("--rounds", type=int, default=2, help="Times each cell runs, interleaved.")
    p.add_argument("--batch", type=int, default=1, help="Rows per request.")
    p.add_argument("--deadline", type=float, default=5.0, help="Seconds per request.")
    p.add_argument("--check-every", type=int, default=50, help="Check every Nth answer.")
    p.add_argument("--api-key", help="An admin key, if the gateway has keys.")
    p.add_argument("--out", type=Path, help="Report folder (default: reports/routing-<time>/).")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    target.add_arguments(p)
    return p.parse_args(argv)


def pick_variants(
    config: ModelConfig, primary: str | None, secondary: str | None
) -> tuple[str, str]:
    """(primary, secondary): as given, else model.yaml's default and jax (or the next one)."""
    primary = primary or config.routing.default
    others = [v for v in config.variants if v != primary]
    secondary = secondary or ("jax" if "jax" in others else others[0] if others else "")
    for name in (primary, secondary):
        if name not in config.variants:
            raise ValueError(f"{config.name} has no variant {name!r} ({list(config.variants)})")
    if primary == secondary:
        raise ValueError(f"primary and secondary are both {primary!r}")
    return primary, secondary


class Bench:
    """One routing comparison against one system: the admin client, the sender, the cells."""

    def __init__(self, args: argparse.Namespace, system: System, work: workload.Workload) -> None:
        self.args = args
        self.system = system
        self.admin = Admin(system.http_url, args.api_key)
        self.send = VariantGrpcSender(
            system.grpc_address, args.model, work,
            check_every=args.check_every, api_key=args.api_key,
        )  # fmt: skip

    def _groups(self) -> dict[str, list[psutil.Process]]:
        return {**self.system.processes(), "loadgen": [psutil.Process()]}

    async def _settled_counters(self, arm: Arm) -> dict[str, dict[str, float]]:
        """The router's counters once shadow copies still in flight have finished."""
        model = self.args.model
        now = router_counters(self.admin.metrics(), model)
        if arm.policy != "mirror":
            return now
        until = asyncio.get_running_loop().time() + SETTLE_S
        while asyncio.get_running_loop().time() < until:
            await asyncio.sleep(0.05)
            again = router_counters(self.admin.metrics(), model)
            if again["shadow"] == now["shadow"]:
                return again
            now = again
        return now

    async def cell(self, arm: Arm, concurrency: int, rnd: int) -> dict[str, Any]:
        a, model = self.args, self.args.model
        self.admin.set_routing(model, arm.routing)
        if a.warmup > 0:  # the policy's budget starts empty, its quantiles fill
            await loadgen.closed_loop(self.send, concurrency, a.warmup, deadline_s=a.deadline)
        before = await self._settled_counters(arm)
        self.send.reset()
        load = os.getloadavg()
        sampler = Sampler(self._groups, interval=0.25)
        sampler.start()
        try:
            run = await loadgen.closed_loop(
                self.send, concurrency, a.duration, deadline_s=a.deadline
            )
        finally:
            resources = sampler.stop()
        after = await self._settled_counters(arm)
        figures = cell_figures(
            arrivals.summarize(run), self.send.served, self.send.hedged, self.send.mirrored,
            delta(before, after), a.batch,
        )  # fmt: skip
        return {
            "round": rnd, "concurrency": concurrency, "arm": arm.label, "policy": arm.policy,
            "routing": arm.routing, **figures,
            "load_average": [round(x, 2) for x in load[:2]],
            "others_cpu_pct": resources.get("_machine", {}).get("other_cpu_pct"),
            "cpu_pct": {k: v["cpu_pct"] for k, v in resources.items() if not k.startswith("_")},
            "cpu_ms_per_request": cpu_per_request(resources, figures["requests"]),
            "error_examples": dict(self.send.examples),
        }  # fmt: skip

    async def run(self, arms: list[Arm], faults: list[tuple[str, dict[str, Any]]]) -> dict:
        a = self.args
        saved = self.admin.snapshot(a.model)
        cells: list[dict[str, Any]] = []
        problems: list[str] = []
        try:
            for variant, fault in faults:
                self.admin.set_fault(a.model, variant, fault)
            for rnd in range(1, a.rounds + 1):
                for c in a.concurrency:
                    for arm in arms:
                        cells.append(await self.cell(arm, c, rnd))
                        _progress(cells[-1])
                        _stop_on_client_errors(cells[-1])
        finally:
            await self.send.close()
            problems = self.admin.restore(a.model, saved, [v for v, _ in faults])
            self.admin.close()
            for p in problems:
                console.print(f"[red]could not restore {p}[/]")
        return {"cells": cells, "before": dataclasses.asdict(saved), "restore_problems": problems}


async def _run(
    args: argparse.Namespace, system: System, work: workload.Workload, arms: list[Arm],
    faults: list[tuple[str, dict[str, Any]]],
) -> dict[str, Any]:  # fmt: skip
    """Bench.run on the running loop (grpc.aio binds its channel to the loop it is made on)."""
    return await Bench(args, system, work).run(arms, faults)


def _progress(cell: dict[str, Any]) -> None:
    lat = cell["latency_ms"]
    console.print(
        f"round {cell['round']} c={cell['concurrency']} {cell['arm']}: {cell['requests']} "
        f"requests, p50 {report.ms(lat['p50'])} p99 {report.ms(lat['p99'])} ms, answered by "
        f"{cell['answered_by']}, hedges {cell['hedges']['sent']:.0f}, errors {cell['errors']}"
    )


def _stop_on_client_errors(cell: dict[str, Any]) -> None:
    """Every request failed in the generator itself: the next cells would too."""
    if cell["ok"] == 0 and all(c.startswith(CLIENT_ERROR_PREFIX) for c in cell["errors"]):
        raise RuntimeError(f"the load generator failed every request: {cell['errors']}")


def document(
    args: argparse.Namespace, config: ModelConfig, variants: tuple[str, str], arms: list[Arm],
    faults: list[tuple[str, dict[str, Any]]], ran: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """results.json: a bench document whose matrix is empty and whose `routing` is this run."""
    base = baseline(arms)
    settings = {
        "duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
        "concurrency": list(args.concurrency), "batch_size": args.batch,
        "deadline_s": args.deadline, "protocol": "grpc",
    }  # fmt: skip
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "environment": machine.describe(None),
        "settings": {
            "preset": "routing",
            "system": args.url or "started by the bench (servegate up)",
            "client": "grpc.aio, closed loop, one channel",
            **settings,
        },
        "cells": [],
        "cold_start": {"runners": {}, "first_request_ms": {}},
        "variant_runners": {f"{config.name}@{v}": config.variants[v].runner for v in variants},
        "variant_settings": {},
        "routing": {
            "model": config.name,
            "primary": variants[0],
            "secondary": variants[1],
            "faults": dict(faults),
            "arms": [{"label": a.label, "routing": a.routing} for a in arms],
            "baseline": base.label if base else None,
            "settings": settings,
            **ran,
            "comparisons": comparisons(ran["cells"], base.label) if base else [],
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    repo = load_repository(args.repository)
    if args.model not in repo:
        console.print(f"[red]unknown model {args.model!r}[/]")
        return 2
    config = repo[args.model]
    try:
        variants = pick_variants(config, args.primary, args.secondary)
        arms = parse_arms(args.policy or DEFAULT_POLICIES, *variants)
        faults = [parse_fault(s) for s in args.fault]
        unknown = sorted({v for v, _ in faults} - set(config.variants))
        if unknown:
            raise ValueError(f"--fault names variants {args.model} does not have: {unknown}")
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    named = {*variants, *(v for v, _ in faults), *(n for a in arms for n in _names(a))}
    kinds = sorted({config.variants[v].runner for v in named if v in config.variants})
    work = workload.build(args.model, args.batch, repository=repo)
    with target.open_system(args, args.repository, kinds) as system:
        ran = uvloop.run(_run(args, system, work, arms, faults))
    doc = document(args, config, variants, arms, faults, ran)
    out = args.out or Path("reports") / f"routing-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / "results.json", doc)
    (out / "report.md").write_text(report.markdown(doc))
    page.write(out / "index.html", doc)
    console.print(_table("against the pinned baseline", compare_rows(doc["routing"]), True))
    console.print(_table("every cell", cell_rows(doc["routing"]), False))
    console.print(f"[bold]report[/] {out / 'index.html'}  ({out / 'report.md'})")
    return 1 if ran["restore_problems"] else 0


def _names(arm: Arm) -> list[str]:
    r = arm.routing
    return [r["default"], *r.get("order", ()), *r.get("shadows", ()), *r.get("variants", ()),
            *r.get("weights", {})]  # fmt: skip


def _table(title: str, rows: list[list[str]], compare: bool) -> Table:
    t = Table(*(COMPARE_HEADER if compare else CELL_HEADER), title=title)
    for r in rows:
        t.add_row(*(x.replace("**", "") for x in r))
    return t


if __name__ == "__main__":
    raise SystemExit(main())

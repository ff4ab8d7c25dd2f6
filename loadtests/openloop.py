"""Load tests: open-loop overload benchmark: admitted rate and latency at 1x, 2x, 4x capacity.

    python -m loadtests.openloop --model digits --variant onnx            # starts servegate up
    servegate bench openloop --url http://127.0.0.1:8000 --grpc-address 127.0.0.1:8001
    python -m loadtests.openloop --ready-file ready.json --protocol http-binary --out run.json

First the capacity of MODEL@VARIANT through the gateway: closed loops of 16, 32, 64 and
128 concurrent requests for 2 s each (a batching gateway serves more with a deeper
queue); the best OK/s is the capacity (or give it: `--capacity RATE`). Then, for each
multiplier (1, 2, 4), requests arrive at that multiple of the capacity for `--duration`
seconds on a fixed schedule, whatever the gateway does (loadtests/loadgen.py), each
with `--deadline`; every request must end in an answer or at its deadline. Per rate it
reports the offered and admitted (OK) rates, p50/p99 of admitted requests, the share
refused (429 / RESOURCE_EXHAUSTED), the other codes, what went unanswered or unsent
(both should be 0), the generator's start lag, and the gateway's RSS (psutil, sampled).
The goal it reports on, never asserts: at the top rate, admitted throughput within 10 %
of capacity, admitted p99 under 5x the 1x p99, RSS bounded (top-rate max within 1.5x
the 1x max), nothing unanswered (loadtests/openloop_report.py).

The generator shares the machine with the gateway when both run here: its CPU use is
in the table (`gen CPU %`, of one core), so is what other processes took meanwhile
(`others CPU %`), and a start lag p99 over 50 ms marks a rate where the generator, not
only the gateway, fell behind. Python's gRPC client costs about as much CPU per request
as the gateway does, so on a small machine the top rates measure both; the last row
(`--baseline`, on by default) drives the top rate at loadtests/refuser.py, a server that
refuses everything at once, to show what the generator alone can offer here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import uvloop

from gateway.config import DEFAULT_REPOSITORY, load_repository
from loadtests import arrivals, loadgen, machine, options, refuser, target, workload
from loadtests.openloop_report import goals, table
from loadtests.resources import Groups, Sampler
from loadtests.senders import PROTOCOLS, Sender, make_sender
from loadtests.system import System

SCHEMA = "servegate-openloop/1"
console = options.console(200)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.openloop",
        description="Open-loop load at multiples of the measured capacity of one variant.",
    )
    p.add_argument("--model", default="digits")
    p.add_argument("--variant", help="Variant to pin (default: the model's default).")
    p.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    p.add_argument("--batch", type=int, default=1, help="Rows per request.")
    p.add_argument("--multipliers", type=options.floats, default=(1.0, 2.0, 4.0))
    p.add_argument("--duration", type=float, default=5.0, help="Seconds of arrivals per rate.")
    p.add_argument("--deadline", type=float, default=2.0, help="Seconds per request.")
    p.add_argument("--grace", type=float, default=2.0, help="After the deadline: unanswered.")
    p.add_argument("--max-inflight", type=int, default=loadgen.DEFAULT_MAX_INFLIGHT)
    p.add_argument("--capacity", type=float, help="Requests/s; skips measuring it.")
    p.add_argument(
        "--capacity-concurrency", type=options.ints, default=(16, 32, 64, 128),
        help="Closed-loop concurrencies (deeper queues make bigger batches).",
    )  # fmt: skip
    p.add_argument("--capacity-seconds", type=float, default=2.0, help="Per concurrency.")
    p.add_argument("--warmup", type=float, default=1.0, help="Unmeasured closed-loop seconds.")
    p.add_argument("--poisson", action="store_true", help="Exponential gaps, not uniform.")
    p.add_argument("--seed", type=int, default=0, help="For --poisson.")
    p.add_argument("--check-every", type=int, default=100, help="Check every Nth answer.")
    p.add_argument(
        "--baseline", action=argparse.BooleanOptionalAction, default=True,
        help="Also drive the top rate at a server that refuses at once (the generator alone).",
    )  # fmt: skip
    p.add_argument("--sample-interval", type=float, default=0.1, help="RSS/CPU sampling (s).")
    p.add_argument("--out", type=Path, help="JSON (default: reports/openloop-<time>.json).")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    target.add_arguments(p)
    return p.parse_args(argv)


def _groups(system: System) -> Groups:
    """The processes sampled: the gateway, the runners (and children), and this generator."""
    me = psutil.Process()

    def groups() -> dict[str, list[psutil.Process]]:
        return {**system.processes(), "loadgen": [me]}

    return groups


async def measure_capacity(
    send: Sender, concurrencies: Sequence[int], seconds: float, deadline_s: float, system: System
) -> dict[str, Any]:
    """Closed loops at each concurrency; the capacity is the best OK/s among them. What
    the machine's other processes took meanwhile is kept: on a shared machine it is
    the noise in the capacity."""
    runs = []
    for c in concurrencies:
        sampler = Sampler(_groups(system), interval=0.25)
        sampler.start()
        try:
            run = await loadgen.closed_loop(send, c, seconds, deadline_s=deadline_s)
        finally:
            resources = sampler.stop()
        s = arrivals.summarize(run)
        runs.append(
            {
                "concurrency": c,
                "ok_per_s": s["admitted_per_s"],
                "latency_ms": s["latency_ms"],
                "kinds": s["kinds"],
                "others_cpu_pct": resources.get("_machine", {}).get("other_cpu_pct"),
            }
        )
    return {"rate": max((r["ok_per_s"] for r in runs), default=0.0), "closed_loop": runs}


async def run_step(
    send: Sender, rate: float, args: argparse.Namespace, system: System, multiplier: float
) -> dict[str, Any]:
    """One open-loop run at `rate`, sampled; its summary plus resources."""
    rng = random.Random(args.seed)
    times = arrivals.schedule(rate, args.duration, poisson=args.poisson, rng=rng)
    sampler = Sampler(_groups(system), interval=args.sample_interval)
    gc.collect()
    gc.disable()  # a full collection over thousands of open requests stalls the schedule
    sampler.start()
    try:
        run = await loadgen.open_loop(
            send, times, deadline_s=args.deadline, grace_s=args.grace,
            max_inflight=args.max_inflight, offered_rate=rate, window_s=args.duration,
        )  # fmt: skip
    finally:
        resources = sampler.stop()
        gc.enable()
    examples = dict(send.examples)
    send.examples.clear()
    return {
        "multiplier": multiplier,
        **arrivals.summarize(run),
        "examples": examples,
        "resources": resources,
    }


async def measure(args: argparse.Namespace, system: System, model_ref: str) -> dict[str, Any]:
    repo = load_repository(args.repository)
    work = workload.build(args.model, args.batch, repository=repo)
    send = make_sender(
        args.protocol, http_url=system.http_url, grpc_address=system.grpc_address,
        model_ref=model_ref, workload=work, deadline_s=args.deadline,
        check_every=args.check_every,
    )  # fmt: skip
    try:
        if args.warmup > 0:
            await loadgen.closed_loop(send, 4, args.warmup, deadline_s=args.deadline)
        if args.capacity:
            capacity: dict[str, Any] = {"rate": args.capacity, "given": True}
        else:
            with console.status(f"capacity of {model_ref}: closed loop"):
                capacity = await measure_capacity(
                    send, args.capacity_concurrency, args.capacity_seconds, args.deadline, system
                )
        console.print(f"capacity of {model_ref} over {args.protocol}: {capacity['rate']:.0f}/s")
        for r in capacity.get("closed_loop", []):
            console.print(
                f"  c={r['concurrency']}: {r['ok_per_s']:.0f}/s, "
                f"p50 {r['latency_ms']['p50'] or 0:.1f} ms, others CPU {r['others_cpu_pct']}%"
            )
        if capacity["rate"] <= 0:
            raise SystemExit(f"no request succeeded while measuring capacity: {capacity}")
        steps = []
        for m in args.multipliers:
            rate = m * capacity["rate"]
            with console.status(f"{m:g}x capacity: {rate:.0f} requests/s for {args.duration} s"):
                steps.append(await run_step(send, rate, args, system, m))
    finally:
        await send.close()
    figures: dict[str, Any] = {"capacity": capacity, "steps": steps}
    if args.baseline and args.multipliers:
        top = max(args.multipliers)
        with console.status(f"the generator alone: {top:g}x against a server that refuses"):
            figures["baseline"] = await baseline(args, system, work, top * capacity["rate"], top)
    return figures


async def baseline(
    args: argparse.Namespace, system: System, work: workload.Workload, rate: float, mult: float
) -> dict[str, Any]:
    """The top rate against loadtests.refuser: what the generator can offer here at all."""
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servegate-refuser-"))
    kind = "grpc" if args.protocol == "grpc" else "http"
    with refuser.running(kind, workdir) as address:
        send = make_sender(
            args.protocol, http_url=address, grpc_address=address, model_ref="refused",
            workload=work, deadline_s=args.deadline, check_every=0,
        )  # fmt: skip
        try:
            return await run_step(send, rate, args, system, mult)
        finally:
            await send.close()


def document(
    args: argparse.Namespace, system: System, model_ref: str, figures: dict[str, Any]
) -> dict[str, Any]:
    """The JSON written for a run: settings, environment, capacity, steps, goals."""
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "repository", "workdir")}
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "target": model_ref,
        "system": {
            "http_url": system.http_url,
            "grpc_address": system.grpc_address,
            "gateway_pid": system.gateway_pid,
            "started_by_bench": not target.attached(args),
        },
        "settings": json.loads(json.dumps(settings, default=str)),
        "environment": machine.describe(None),
        **figures,
        "goals": goals(figures["capacity"]["rate"], figures["steps"], figures.get("baseline")),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    repo = load_repository(args.repository)
    if args.model not in repo:
        console.print(f"[red]unknown model {args.model!r}[/]")
        return 2
    variant = args.variant or repo[args.model].routing.default
    if variant not in repo[args.model].variants:
        console.print(f"[red]{args.model} has no variant {variant!r}[/]")
        return 2
    model_ref = f"{args.model}@{variant}"
    kind = repo[args.model].variants[variant].runner
    with target.open_system(args, args.repository, [kind]) as system:
        if system.gateway_pid is None:
            console.print("[yellow]gateway pid unknown (--gateway-pid): no gateway RSS[/]")
        figures = uvloop.run(measure(args, system, model_ref))
        doc = document(args, system, model_ref, figures)
    out = args.out or Path("reports") / f"openloop-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    console.print(table(doc))
    for name, g in doc["goals"].items():
        mark = "[green]met[/]" if g["met"] else "[red]not met[/]"
        console.print(f"goal {name}: {mark} — {g['text']}")
    console.print(f"[bold]written[/] {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

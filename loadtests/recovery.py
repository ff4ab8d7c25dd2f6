"""Load tests: recovery benchmark — SIGKILL each runner under load, time until it serves again.

    python -m loadtests.recovery                           # starts servegate up, every kind
    python -m loadtests.recovery --kinds onnx,jax --within 10
    servegate bench recovery --ready-file ready.json       # a running `servegate up`

For each runner kind (onnx, jax, tfserving, torchserve: the ones the model's variants
use), steady open-loop gRPC load at `--rate` runs on MODEL@VARIANT, the variant that
kind serves; after `--before` seconds the runner process is SIGKILLed (for TorchServe
its Java frontend, a descendant of the launcher the ready file names; `--torchserve-kill
launcher` kills the launcher instead). The load goes on until the first success of a
request sent after the kill, plus `--after` seconds, or until `--within` seconds pass.
Per kind it reports the time from the kill to that success ("not recovered within N s"
otherwise), the requests that failed meanwhile by code, those left unanswered (must be
0: each request has a deadline), and the gateway's `servegate_runner_restarts_total`
for that kind before and after (absent: 0). Runners are killed one kind at a time, in
order, on one system: a kind that does not come back stays down for the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvloop

from gateway.config import DEFAULT_REPOSITORY, Repository, load_repository
from loadtests import arrivals, loadgen, machine, options, probes, recovery_report, target, workload
from loadtests.senders import GrpcSender
from loadtests.system import System

SCHEMA = "servegate-recovery/1"
KIND_ORDER = ("onnx", "jax", "tfserving", "torchserve")
console = options.console(160)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.recovery",
        description="SIGKILL each runner kind under gRPC load; time until its variant serves.",
    )
    p.add_argument("--model", default="digits")
    p.add_argument("--kinds", help="Comma-separated runner kinds (default: the model's).")
    p.add_argument("--rate", type=float, default=50.0, help="Requests per second.")
    p.add_argument("--before", type=float, default=1.0, help="Seconds of load before the kill.")
    p.add_argument("--within", type=float, default=5.0, help="Seconds to wait for recovery.")
    p.add_argument("--after", type=float, default=0.5, help="Seconds of load after recovery.")
    p.add_argument("--deadline", type=float, default=1.0, help="Seconds per request.")
    p.add_argument(
        "--wait-standby", type=float, default=0.0, metavar="SECONDS",
        help="Before each kill, wait up to this long for the runner's warm standby to be "
        "ready (/admin/runners); with SERVEGATE_STANDBY=all set for the system it starts.",
    )  # fmt: skip
    p.add_argument("--grace", type=float, default=2.0, help="After the deadline: unanswered.")
    p.add_argument("--torchserve-kill", choices=probes.TORCHSERVE_TARGETS, default="frontend")
    p.add_argument("--out", type=Path, help="JSON (default: reports/recovery-<time>.json).")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    target.add_arguments(p)
    return p.parse_args(argv)


def variant_for(repo: Repository, model: str, kind: str) -> str | None:
    """The model's variant served by runner `kind` (the first, if several)."""
    return next((name for name, v in repo[model].variants.items() if v.runner == kind), None)


def kinds_for(repo: Repository, model: str, asked: str | None) -> list[str]:
    if asked:
        return [k.strip() for k in asked.split(",") if k.strip()]
    used = {v.runner for v in repo[model].variants.values() if v.endpoint is None}
    return [k for k in KIND_ORDER if k in used] + sorted(used - set(KIND_ORDER))


def _restarts(system: System, kind: str) -> float:
    text = probes.fetch_metrics(system.http_url)
    return probes.restart_count(text, kind) if text else 0.0


async def _standby_ready(system: System, kind: str, within_s: float) -> bool:
    """Whether `kind`'s warm standby is ready (polling the admin route up to `within_s`)."""
    until = time.monotonic() + within_s
    async with httpx.AsyncClient(base_url=system.http_url, timeout=5) as http:
        while True:
            try:
                reply = await http.get("/admin/runners")
                runners = {r["kind"]: r for r in reply.json().get("runners", [])}
                if runners.get(kind, {}).get("standby"):
                    return True
            except (httpx.HTTPError, ValueError, AttributeError):
                pass
            if time.monotonic() >= until:
                return False
            await asyncio.sleep(0.5)


async def _serving(send: GrpcSender, deadline_s: float, tries: int = 20) -> bool:
    """A few requests first: a variant that does not serve now cannot show a recovery."""
    for i in range(tries):
        if await send(i, deadline_s) == "OK":
            return True
        await asyncio.sleep(0.1)
    return False


async def kill_one(
    args: argparse.Namespace, system: System, kind: str, variant: str, work: workload.Workload
) -> dict[str, Any]:
    """Load, kill, wait for the first success after the kill; the figures of that kind."""
    runner = system.runners.get(kind)
    row: dict[str, Any] = {"kind": kind, "variant": variant}
    if runner is None or runner.pid is None:
        return {**row, "skipped": f"no pid known for runner {kind!r}"}
    send = GrpcSender(system.grpc_address, f"{args.model}@{variant}", work, check_every=1)
    try:
        if not await _serving(send, args.deadline):
            return {**row, "skipped": "the variant did not serve before the kill"}
        if args.wait_standby:
            row["standby_ready"] = await _standby_ready(system, kind, args.wait_standby)
        try:
            victim = probes.kill_target(kind, runner.pid, args.torchserve_kill)
        except (psutil.Error, LookupError) as exc:
            return {**row, "skipped": f"no process to kill: {exc}"}
        row["killed"] = {"pid": victim.pid, "name": victim.name(), "runner_pid": runner.pid}
        restarts_before = _restarts(system, kind)
        clock = time.perf_counter
        stop, recovered = asyncio.Event(), asyncio.Event()
        kill_at: list[float] = []

        def seen(o: arrivals.Outcome) -> None:
            if kill_at and o.kind == "ok" and o.sent_s >= kill_at[0]:
                recovered.set()

        t0 = clock()
        times = arrivals.schedule(args.rate, args.before + args.within + args.after)
        load = asyncio.create_task(
            loadgen.open_loop(
                send, times, deadline_s=args.deadline, grace_s=args.grace,
                offered_rate=args.rate, stop=stop, on_outcome=seen, t0=t0, clock=clock,
            )
        )  # fmt: skip
        try:
            await asyncio.sleep(max(0.0, args.before - (clock() - t0)))
            os.kill(victim.pid, signal.SIGKILL)
            kill_at.append(clock() - t0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recovered.wait(), args.within)
                await asyncio.sleep(args.after)
        finally:
            stop.set()  # and every request sent ends (deadline + grace) before we go on
            run = await load
    finally:
        await send.close()
    row.update(recovery_report.figures(run.outcomes, kill_at[0], args.within))
    row["restarts_before"] = restarts_before
    row["restarts_after"] = _restarts(system, kind)
    row["examples"] = dict(send.examples)
    return row


async def measure(
    args: argparse.Namespace, system: System, repo: Repository, kinds: list[str]
) -> list[dict[str, Any]]:
    work = workload.build(args.model, 1, repository=repo)
    rows = []
    for kind in kinds:
        variant = variant_for(repo, args.model, kind)
        if variant is None:
            rows.append({"kind": kind, "skipped": f"{args.model} has no {kind} variant"})
            continue
        if args.ready_file:  # a supervisor that restarted a runner may have new pids
            system.runners.update(target.describe(args).runners)
        with console.status(f"{kind}: {args.rate:g}/s on {args.model}@{variant}, then SIGKILL"):
            rows.append(await kill_one(args, system, kind, variant, work))
        console.print(f"{kind}: {recovery_report.verdict(rows[-1])}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    repo = load_repository(args.repository)
    if args.model not in repo:
        console.print(f"[red]unknown model {args.model!r}[/]")
        return 2
    kinds = kinds_for(repo, args.model, args.kinds)
    with target.open_system(args, args.repository, kinds) as system:
        rows = uvloop.run(measure(args, system, repo, kinds))
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "repository", "workdir")}
    doc = {
        "schema": SCHEMA,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": args.model,
        "settings": json.loads(json.dumps(settings, default=str)),
        "environment": machine.describe(None),
        "runners": rows,
    }
    out = args.out or Path("reports") / f"recovery-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    console.print(recovery_report.table(doc))
    console.print(f"[bold]written[/] {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

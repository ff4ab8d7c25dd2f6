"""Load tests: `servegate bench` — the load-test matrix and its report.

    python -m loadtests.bench [--quick] [--url URL ...] [--out DIR]   # run, write a report
    python -m loadtests.bench compare A B                              # what changed
    python -m loadtests.bench render DIR                               # re-render from JSON
    python -m loadtests.bench openloop [...]        # open-loop overload (loadtests/openloop.py)
    python -m loadtests.bench recovery [...]        # SIGKILL recovery (loadtests/recovery.py)
    python -m loadtests.bench routing [...]         # routing policies (loadtests/routing.py)
    python -m loadtests.bench peers [...]           # beside KServe/MLServer (loadtests/peers.py)
    python -m loadtests.bench hotpath [...]         # the gateway's CPU (loadtests/hotpath.py)

Without `--url` it starts the whole system itself (`servegate up` on free ports, only
the runners the chosen variants need) and stops it afterwards. Each cell is a headless
Locust run (loadtests/locustfile.py); every gateway cell is followed by the same load
straight to the variant's runner. The report lands in `reports/<timestamp>/`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gateway.config import DEFAULT_REPOSITORY, Repository, load_repository
from loadtests import (
    coldstart,
    compare,
    hotpath,
    machine,
    matrix,
    openloop,
    page,
    peers,
    recovery,
    report,
)
from loadtests.cellrun import CellSettings, run_cell
from loadtests.options import ints, names
from loadtests.resources import Nvml
from loadtests.results import SCHEMA
from loadtests.routing import main as routing_main
from loadtests.system import LocalSystem, RunnerInfo, System, read_ready_file
from loadtests.wire import PROTOCOLS

console = Console()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="servegate bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load-test every variant x protocol x concurrency x batch size, through the "
        "gateway and\nstraight to each runner, and write an HTML + Markdown + JSON report.",
        epilog="other commands:\n  servegate bench compare A B   what changed between two "
        "reports\n  servegate bench render DIR    re-render a report from its results.json"
        "\n  servegate bench openloop ...  open-loop load at 1x/2x/4x capacity (--help)"
        "\n  servegate bench recovery ...  SIGKILL each runner under load (--help)"
        "\n  servegate bench routing ...   routing policies under a fault (--help)"
        "\n  servegate bench peers ...     beside KServe, MLServer and the floors (--help)"
        "\n  servegate bench hotpath ...   the gateway's own CPU per request (--help)",
    )
    p.add_argument("--quick", action="store_true", help="A few seconds a cell, digits only.")
    p.add_argument("--models", type=names, help="Comma-separated models (default: preset's).")
    p.add_argument("--variants", type=names, help="Comma-separated variants (default: all).")
    p.add_argument("--protocols", type=names, default=PROTOCOLS, help="Gateway protocols.")
    p.add_argument("--concurrency", type=ints, help="Comma-separated user counts.")
    p.add_argument("--batch-sizes", type=ints, help="Comma-separated rows per request.")
    p.add_argument("--duration", type=float, help="Measured seconds per cell.")
    p.add_argument("--warmup", type=float, help="Unmeasured seconds before each cell.")
    p.add_argument("--no-direct", action="store_true", help="Skip direct-to-runner cells.")
    p.add_argument("--request-timeout", type=float, default=10.0, help="Seconds per request.")
    p.add_argument(
        "--cold-start",
        action=argparse.BooleanOptionalAction,
        help="Time each runner's start alone first (default: on, except --quick and --url).",
    )
    p.add_argument("--out", type=Path, help="Report folder (default: reports/<timestamp>/).")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    target = p.add_argument_group("a running system (default: start one)")
    target.add_argument("--url", help="Gateway HTTP URL, e.g. http://127.0.0.1:8000.")
    target.add_argument("--grpc-address", help="Gateway gRPC HOST:PORT (default: URL host:8001).")
    target.add_argument("--ready-file", type=Path, help="A `servegate up --ready-file` JSON.")
    target.add_argument(
        "--runner", action="append", default=[], help="KIND=HOST:PORT[@PID] (repeatable)."
    )
    target.add_argument("--gateway-pid", type=int, help="Sample this process as the gateway.")
    target.add_argument("--no-build", action="store_true", help="Do not build missing models.")
    return p.parse_args(argv)


def attach(args: argparse.Namespace) -> System:
    """The System described by --url / --ready-file / --runner."""
    if args.ready_file:
        system = read_ready_file(args.ready_file)
    else:
        host = args.url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        system = System(http_url=args.url, grpc_address=args.grpc_address or f"{host}:8001")
    if args.url:
        system.http_url = args.url.rstrip("/")
    if args.grpc_address:
        system.grpc_address = args.grpc_address
    for item in args.runner:
        kind, _, rest = item.partition("=")
        endpoint, _, pid = rest.partition("@")
        system.runners[kind] = RunnerInfo(kind, endpoint, int(pid) if pid else None)
    system.gateway_pid = args.gateway_pid or system.gateway_pid
    return system


# a model's settings in the report: batching, routing, timeouts (not what is shown elsewhere)
MODEL_FIELDS_SHOWN = {"signature", "variants", "description"}


def results_doc(
    args: argparse.Namespace,
    repo: Repository,
    preset: matrix.Preset,
    system: System,
    env: dict[str, Any],
    cells: list[matrix.Cell],
) -> dict[str, Any]:
    pairs = list(dict.fromkeys((c.model, c.variant) for c in cells))
    models = list(dict.fromkeys(c.model for c in cells))
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "environment": env,
        "settings": {
            "preset": preset.name + (" (overridden by flags)" if _overridden(args) else ""),
            "duration_s": preset.duration_s,
            "warmup_s": preset.warmup_s,
            "axes": {
                m: {
                    "concurrency": list(preset.axes_for(m).concurrency),
                    "batch_sizes": list(preset.axes_for(m).batch_sizes),
                }
                for m in models
            },
            "protocols": list(args.protocols),
            "direct": not args.no_direct,
            "request_timeout_s": args.request_timeout,
            "system": args.url or "started by the bench (servegate up)",
            "client": "Locust (gevent), closed loop, one connection per user",
        },
        "variant_runners": {f"{m}@{v}": repo[m].variants[v].runner for m, v in pairs},
        "variant_settings": {
            **{m: repo[m].model_dump(mode="json", exclude=MODEL_FIELDS_SHOWN) for m in models},
            **{f"{m}@{v}": repo[m].variants[v].model_dump(mode="json") for m, v in pairs},
        },
        "cold_start": {
            "system_ready_s": system.started_s,
            "runners": {
                k: {"ready_after_s": r.ready_after_s, "description": r.description}
                for k, r in system.runners.items()
            },
            "first_request_ms": {},
        },
        "cells": [],
    }


def _overridden(args: argparse.Namespace) -> bool:
    flags = (args.models, args.concurrency, args.batch_sizes, args.duration, args.warmup)
    return any(v is not None for v in flags)


def write_report(out: Path, doc: dict[str, Any]) -> None:
    report.write_json(out / "results.json", doc)
    (out / "report.md").write_text(report.markdown(doc))
    page.write(out / "index.html", doc)


LIVE_ROWS = 15


def recent_table(results: list[dict[str, Any]]) -> Table:
    """The last LIVE_ROWS cells' results; failing cells in red."""
    table = Table(
        "model", "variant", "target", "protocol", "c", "batch", "requests", "failures",
        "infer/s", "p50 ms", "p99 ms", title=f"{len(results)} cells done",
    )  # fmt: skip
    for r in results[-LIVE_ROWS:]:
        bad = r["failures"] > 0 or r["requests"] == 0
        table.add_row(
            r["model"], r["variant"], r["target"],
            r["protocol"] if r["target"] == "gateway" else f"{r['wire']} gRPC",
            str(r["concurrency"]), str(r["batch_size"]), report.num(r["requests"]),
            report.num(r["failures"]), report.num(r["infer_per_s"]), report.ms(r.get("p50_ms")),
            report.ms(r.get("p99_ms")), style="red" if bad else None,
        )  # fmt: skip
    return table


def run_matrix(
    out: Path, repo: Repository, system: System, cells: list[matrix.Cell], doc: dict[str, Any],
    settings: CellSettings, nvml: Nvml | None,
) -> None:  # fmt: skip
    """Runs every cell with a live display, saving results.json after each one."""
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console,
    )  # fmt: skip
    overall = progress.add_task("bench", total=len(cells))
    current = progress.add_task("", total=1.0)
    with Live(Group(progress, recent_table([])), console=console, refresh_per_second=4) as live:
        for cell in cells:
            progress.update(current, description=cell.id, completed=0.0)
            key_file = None
            if cell.target == "gateway":
                endpoint = system.grpc_address
            else:
                endpoint = system.direct_endpoint(repo, cell.model, cell.variant) or ""
                key_file = system.key_file(repo, cell.model, cell.variant)
            result = run_cell(
                cell, system, endpoint, out, settings, nvml=nvml,
                on_tick=lambda f: progress.update(current, completed=f), key_file=key_file,
            )  # fmt: skip
            doc["cells"].append(result)
            report.write_json(out / "results.json", doc)
            progress.advance(overall)
            live.update(Group(progress, recent_table(doc["cells"])))
            if not console.is_terminal:  # CI logs: one line per cell as it finishes
                console.print(
                    f"{len(doc['cells'])}/{len(cells)} {cell.id}: {result['requests']} requests, "
                    f"{result['failures']} failures, p50 {report.ms(result.get('p50_ms'))} ms"
                )
        progress.update(current, visible=False)


def bench(args: argparse.Namespace) -> int:
    repo = load_repository(args.repository)
    preset = matrix.PRESETS["quick" if args.quick else "default"]
    preset = matrix.override(
        preset, models=args.models, concurrency=args.concurrency,
        batch_sizes=args.batch_sizes, duration_s=args.duration, warmup_s=args.warmup,
    )  # fmt: skip
    cells = matrix.cells(
        repo, preset, variants=args.variants, protocols=args.protocols, direct=not args.no_direct
    )
    if not cells:
        console.print("[red]the matrix is empty: check --models/--variants/--protocols[/]")
        return 2
    out = args.out or Path("reports") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    nvml = Nvml.open()
    pairs = list(dict.fromkeys((c.model, c.variant) for c in cells))
    cold: dict[str, Any] = {}
    attached = bool(args.url or args.ready_file)
    if args.cold_start or (args.cold_start is None and preset.cold_start and not attached):
        with console.status("cold start: each runner alone"):
            cold = coldstart.measure(repo, pairs, out / "coldstart")
    local = None
    if attached:
        system = attach(args)
    else:
        kinds = sorted({repo[c.model].variants[c.variant].runner for c in cells})
        local = LocalSystem(repo.root, out / "system", kinds, build=not args.no_build)
        console.print(f"starting servegate up with runners {kinds} (log: {local.log_path})")
        system = local.start()
        console.print(f"system ready in {system.started_s:.1f} s")
    try:
        missing = {(c.model, c.variant) for c in cells if c.target == "direct"} - {
            (c.model, c.variant)
            for c in cells
            if system.direct_endpoint(repo, c.model, c.variant) is not None
        }
        if missing:
            console.print(f"[yellow]no runner endpoint for {sorted(missing)}: no direct cells[/]")
            cells = [
                c for c in cells if c.target == "gateway" or (c.model, c.variant) not in missing
            ]
        doc = results_doc(args, repo, preset, system, machine.describe(nvml), cells)
        for kind, row in cold.items():
            doc["cold_start"]["runners"].setdefault(kind, {}).update(row)
        doc["cold_start"]["first_request_ms"] = coldstart.through_gateway(
            repo, system.grpc_address, pairs
        )
        settings = CellSettings(
            preset.duration_s, preset.warmup_s, repo.root.resolve(), args.request_timeout
        )
        minutes = len(cells) * (preset.duration_s + preset.warmup_s + 3) / 60
        console.print(f"{len(cells)} cells, about {minutes:.1f} min; report: {out}")
        try:
            run_matrix(out, repo, system, cells, doc, settings, nvml)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: writing the report of the cells done[/]")
    finally:
        if local is not None:
            local.stop()
    write_report(out, doc)
    console.print(f"[bold green]report[/] {out / 'index.html'}  ({out / 'report.md'})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        return compare.main(argv[1:])
    if argv[:1] == ["openloop"]:
        return openloop.main(argv[1:])
    if argv[:1] == ["recovery"]:
        return recovery.main(argv[1:])
    if argv[:1] == ["routing"]:
        return routing_main(argv[1:])
    if argv[:1] == ["peers"]:
        return peers.main(argv[1:])
    if argv[:1] == ["hotpath"]:
        return hotpath.main(argv[1:])
    if argv[:1] == ["render"]:
        for folder in argv[1:]:
            write_report(Path(folder), report.load(Path(folder)))
        return 0
    return bench(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

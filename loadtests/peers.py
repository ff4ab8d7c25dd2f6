"""Load tests: `servegate bench peers` -- servegate beside KServe, MLServer and the floors.

Runs the peer harness (../shared/peers: one closed-loop tritonclient client, digits,
batch 1, one target at a time, each run's order reversed from the last) with servegate
added as a target (`servegate up` with its defaults, started and stopped by the harness),
then prints, for each run, the table issue 14 asks for:

    | | c=1 p50 vs the floor | c=16 vs the best peer | c=64 | gateway CPU per request, c=16 |

Ratios are within one run only: the machine is shared, the same cell moves 20-40 %
between runs. `--workers 1,2` adds one servegate target per worker count, and a scaling
row (throughput at c=64 against one worker). Without the harness or its environments
(bash ../shared/peers/setup_envs.sh) it says what is missing and exits 0.

    python -m loadtests.bench peers [--runs 2] [--workers 1] [--duration 8] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()

ROOT = Path(__file__).resolve().parents[1]
PEERS = ("kserve", "mlserver-pw0", "mlserver")
FLOORS = {"grpc": "floor-grpc", "http": "floor-http"}
PROTOCOL_NAMES = {"grpc": "gRPC", "http": "HTTP (JSON)"}
BASE_PORT = 18000


@dataclass(frozen=True)
class Cell:
    target: str
    protocol: str
    concurrency: int
    throughput: float
    p50_ms: float
    cpu_us: float | None


def cells(rows: Iterable[dict[str, Any]], run: int) -> list[Cell]:
    """The run's measured digits cells that succeeded."""
    wanted = [
        r for r in rows
        if r.get("run") == run and r.get("model") == "digits" and r.get("ok")
        and r.get("protocol") in FLOORS and "concurrency" in r
    ]  # fmt: skip
    return [_cell(r) for r in wanted]


def _cell(r: dict[str, Any]) -> Cell:
    return Cell(
        r["target"], r["protocol"], int(r["concurrency"]), float(r["throughput"]),
        float(r["p50_ms"]), r.get("server_cpu_us_per_req"),
    )  # fmt: skip


def _find(found: list[Cell], target: str, protocol: str, c: int) -> Cell | None:
    return next(
        (x for x in found if (x.target, x.protocol, x.concurrency) == (target, protocol, c)), None
    )


def ratios(found: list[Cell], target: str, protocol: str) -> dict[str, Any]:
    """One row of the table for `target`: c=1 p50 over the floor's, throughput over the
    best peer's at c=16 and c=64 (and which peer that was), CPU per request at c=16."""
    row: dict[str, Any] = {"target": target, "protocol": protocol}
    one, floor = _find(found, target, protocol, 1), _find(found, FLOORS[protocol], protocol, 1)
    if one is not None:
        row["p50_ms"] = one.p50_ms
        if floor is not None:
            row["p50_vs_floor"] = one.p50_ms / floor.p50_ms
    for c in (16, 64):
        ours = _find(found, target, protocol, c)
        peers = [p for p in (_find(found, n, protocol, c) for n in PEERS) if p is not None]
        if ours is None or not peers:
            continue
        best = max(peers, key=lambda p: p.throughput)
        row[f"c{c}"] = ours.throughput / best.throughput
        row[f"c{c}_rps"] = ours.throughput
        row[f"c{c}_peer"] = f"{best.target} {best.throughput:.0f}/s"
        if c == 16:
            row["cpu_us"] = ours.cpu_us
    return row


def scaling(found: list[Cell], protocol: str, workers: Sequence[int]) -> dict[int, float]:
    """Throughput at c=64 of each worker count over one worker's."""
    base = _find(found, target_name(1), protocol, 64)
    if base is None:
        return {}
    out = {}
    for n in workers:
        cell = _find(found, target_name(n), protocol, 64)
        if cell is not None:
            out[n] = cell.throughput / base.throughput
    return out


def target_name(workers: int) -> str:
    return "servegate" if workers == 1 else f"servegate-w{workers}"


def add_target(workers: int, index: int) -> str:
    http, grpc = BASE_PORT + 10 * index, BASE_PORT + 10 * index + 1
    cmd = (
        f"cd {ROOT} && exec .venv/bin/servegate up --http-port {http} --grpc-port {grpc} "
        f"--workers {workers}"
    )
    return (
        f"name={target_name(workers)},http=127.0.0.1:{http},grpc=127.0.0.1:{grpc},"
        f"model=digits,cmd={cmd},ready_timeout=400"
    )


def missing(harness: Path, home: Path) -> list[str]:
    """What the harness needs and does not have here."""
    out = []
    if not (harness / "run_matrix.py").exists():
        out.append(f"the peer harness ({harness}/run_matrix.py)")
    for env in ("base", "kserve", "mlserver"):
        if not (home / env / "bin" / "python").exists():
            out.append(f"its '{env}' environment ({home / env}; bash {harness}/setup_envs.sh)")
    return out


def table(rows: list[dict[str, Any]], run: int) -> Table:
    t = Table(
        "target", "protocol", "c=1 p50", "vs floor", "c=16 vs best peer", "c=64 vs best peer",
        "CPU µs/req c=16", title=f"run {run}: digits, batch 1, one tritonclient client",
    )  # fmt: skip
    for r in rows:
        t.add_row(
            r["target"], PROTOCOL_NAMES[r["protocol"]],
            f"{r['p50_ms']:.2f} ms" if "p50_ms" in r else "-",
            f"{r['p50_vs_floor']:.2f}x" if "p50_vs_floor" in r else "-",
            f"{r['c16']:.2f}x ({r['c16_peer']})" if "c16" in r else "-",
            f"{r['c64']:.2f}x ({r['c64_peer']})" if "c64" in r else "-",
            f"{r['cpu_us']:.0f}" if r.get("cpu_us") else "-",
        )  # fmt: skip
    return t


def report(rows: list[dict[str, Any]], workers: Sequence[int]) -> list[dict[str, Any]]:
    """Prints each run's table (and the worker scaling); returns the table rows."""
    out = []
    for run in sorted({r["run"] for r in rows if isinstance(r.get("run"), int)}):
        found = cells(rows, run)
        run_rows = [
            {**ratios(found, target_name(n), p), "run": run} for n in workers for p in FLOORS
        ]
        console.print(table(run_rows, run))
        if len(workers) > 1:
            for p in FLOORS:
                scale = scaling(found, p, workers)
                shown = ", ".join(f"{n} workers {x:.2f}x" for n, x in scale.items())
                console.print(f"run {run} {PROTOCOL_NAMES[p]} c=64 vs 1 worker: {shown}")
        out += run_rows
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="servegate bench peers", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--workers", default="1", help="Comma-separated worker counts (targets).")
    p.add_argument("--peers", default="floor-grpc,floor-http,kserve,mlserver-pw0")
    p.add_argument("--harness", type=Path, default=ROOT.parent / "shared" / "peers")
    p.add_argument("--out", type=Path, help="JSON lines (default: reports/peers-<time>.jsonl).")
    p.add_argument("--analyse", type=Path, help="Only print the tables of an earlier --out.")
    args = p.parse_args(argv)
    workers = [int(n) for n in args.workers.split(",") if n.strip()]
    if args.analyse is not None:
        report(_read(args.analyse), workers)
        return 0
    home = Path(os.environ.get("ANCHORS_HOME", "/tmp/anchors"))
    lacking = missing(args.harness, home)
    if lacking:
        console.print("[yellow]peer comparison skipped[/]: missing " + "; ".join(lacking))
        return 0
    python = home / "base" / "bin" / "python"
    if not (home / "models" / "digits.onnx").exists():
        subprocess.run([python, "make_models.py", "--skip-resnet"], cwd=args.harness, check=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "reports" / f"peers-{stamp}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv_ = [
        str(python), "run_matrix.py", "--runs", str(args.runs), "--concurrency",
        args.concurrency, "--duration", str(args.duration), "--targets", args.peers,
        "--resnet-targets", "none", "--out", str(out),
    ]  # fmt: skip
    for i, n in enumerate(workers):
        argv_ += ["--add-target", add_target(n, i)]
    code = subprocess.call(argv_, cwd=args.harness)
    if code != 0:
        console.print(f"[red]the harness exited with {code}[/]")
        return code
    report(_read(out), workers)
    console.print(f"results: {out}")
    return 0


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    raise SystemExit(main())

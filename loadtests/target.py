"""Load tests: the system a benchmark measures — one it starts, or one already running.

Shared by `loadtests.openloop` and `loadtests.recovery`: the same flags as
`servegate bench` (`--url`, `--grpc-address`, `--ready-file`, `--gateway-pid`), and a
context manager that yields a `System` whose gateway pid is known where it can be:
the process the benchmark started (`servegate up` serves the gateway in its own
process), `--gateway-pid`, or the process listening on the gateway's HTTP port.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from loadtests.probes import listener_pid
from loadtests.system import LocalSystem, RunnerInfo, System, read_ready_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that pick the system under test (default: start `servegate up`)."""
    g = parser.add_argument_group("a running system (default: start `servegate up` on free ports)")
    g.add_argument("--url", help="Gateway HTTP URL, e.g. http://127.0.0.1:8000.")
    g.add_argument("--grpc-address", help="Gateway gRPC HOST:PORT (default: URL host:8001).")
    g.add_argument("--ready-file", type=Path, help="A `servegate up --ready-file` JSON.")
    g.add_argument(
        "--runner-pid", action="append", default=[], metavar="KIND=PID",
        help="A runner's pid when no ready file names it (repeatable).",
    )  # fmt: skip
    g.add_argument("--gateway-pid", type=int, help="The gateway's pid (default: found by port).")
    g.add_argument("--no-build", action="store_true", help="Do not build missing models.")
    g.add_argument("--workdir", type=Path, help="Where a started system keeps its logs.")


def attached(args: argparse.Namespace) -> bool:
    return bool(args.url or args.ready_file)


def describe(args: argparse.Namespace) -> System:
    """The running System that --url / --ready-file / --runner-pid describe."""
    if args.ready_file:
        system = read_ready_file(args.ready_file)
    else:
        host = urlsplit(args.url).hostname or "127.0.0.1"
        system = System(http_url=args.url, grpc_address=args.grpc_address or f"{host}:8001")
    if args.url:
        system.http_url = args.url.rstrip("/")
    if args.grpc_address:
        system.grpc_address = args.grpc_address
    for item in args.runner_pid:
        kind, _, pid = item.partition("=")
        old = system.runners.get(kind)
        system.runners[kind] = RunnerInfo(kind, old.endpoint if old else "", int(pid))
    system.gateway_pid = args.gateway_pid or system.gateway_pid
    if system.gateway_pid is None:
        port = urlsplit(system.http_url).port
        system.gateway_pid = listener_pid(port) if port else None
    return system


@contextlib.contextmanager
def open_system(
    args: argparse.Namespace, repository: Path, runner_kinds: Sequence[str]
) -> Iterator[System]:
    """The system under test; one started here (with `runner_kinds`) is stopped on exit."""
    if attached(args):
        yield describe(args)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servegate-bench-"))
    local = LocalSystem(repository, workdir, list(runner_kinds), build=not args.no_build)
    try:
        system = local.start()
        if args.gateway_pid:
            system.gateway_pid = args.gateway_pid
        yield system
    finally:
        local.stop()

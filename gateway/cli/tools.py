"""CLI: `servegate doctor` (this machine, and the tools it installs) and `servegate bench`
(the load tests, a program of their own)."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer
from rich.table import Table

from gateway import doctor as doctor_checks
from gateway.cli.app import app, console


@app.command()
def doctor(
    install: Annotated[
        list[str] | None, typer.Option(help="Install a tool: perf_analyzer (repeatable).")
    ] = None,
) -> None:
    """What this machine has for servegate (frameworks, Java, perf_analyzer, Docker, GPU)."""
    for tool in install or []:
        if tool != "perf_analyzer":
            console.print(f"[red]unknown tool {tool!r}; known: perf_analyzer[/]")
            raise typer.Exit(2)
        with console.status("installing perf_analyzer (tritonclient 2.50.0's binary)"):
            try:
                path = doctor_checks.install_perf_analyzer()
            except doctor_checks.ToolError as exc:
                console.print(f"[red]{exc}[/]")
                raise typer.Exit(1) from None
        console.print(f"perf_analyzer installed: {path}")
    table = Table("what", "here")
    for what, state in doctor_checks.report():
        table.add_row(what, state)
    console.print(table)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Load-test matrix and report in reports/ (`bench --help`); `bench compare A B` diffs two."""
    # A program of its own: Locust and gevent never enter the gateway's process.
    raise typer.Exit(subprocess.call([sys.executable, "-m", "loadtests.bench", *ctx.args]))

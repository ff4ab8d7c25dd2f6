"""Load tests: what every `servegate bench` command parses and prints the same way."""

from __future__ import annotations

from rich.console import Console


def ints(text: str) -> tuple[int, ...]:
    """A comma-separated list of integers (`--concurrency 1,16,64`)."""
    return tuple(int(x) for x in text.split(",") if x.strip())


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def console(width_when_piped: int = 200) -> Console:
    """A rich console; in logs and pipes, wide enough for one table row per line."""
    out = Console()
    if not out.is_terminal:
        out.width = width_when_piped
    return out

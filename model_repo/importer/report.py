"""What the import prints: a progress display while it works, then one table row per variant."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from model_repo.importer.parity import Comparison


@dataclass(frozen=True)
class Outcome:
    """One variant's result: kept (within tolerance) or left out with the reason."""

    variant: str
    runner: str
    converter: str
    comparison: Comparison | None
    size_bytes: int
    seconds: float
    reason: str = ""

    @property
    def kept(self) -> bool:
        return self.comparison is not None and self.comparison.ok and not self.reason

    def as_json(self) -> dict[str, object]:
        c = self.comparison
        return {
            "variant": self.variant,
            "runner": self.runner,
            "converter": self.converter,
            "kept": self.kept,
            "max_abs_diff": None if c is None else c.max_abs,
            "max_rel_diff": None if c is None else c.max_rel,
            "argmax_agreement": None if c is None else c.argmax_agreement,
            "size_bytes": self.size_bytes,
            "build_seconds": round(self.seconds, 3),
            "reason": self.reason,
        }


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def table(outcomes: list[Outcome], rtol: float, atol: float) -> Table:
    t = Table(
        "variant", "runner", "converter", "max |diff|", "max rel", "argmax", "size", "build",
        "result", title=f"parity with the source (rtol {rtol:g}, atol {atol:g})",
    )  # fmt: skip
    t.columns[2].overflow = "fold"
    for o in outcomes:
        c = o.comparison
        finite = c is not None and c.max_abs != float("inf")
        t.add_row(
            o.variant,
            o.runner,
            o.converter or "-",
            f"{c.max_abs:.2e}" if finite and c else "-",
            f"{c.max_rel:.2e}" if finite and c else "-",
            f"{c.argmax_agreement:.0%}" if c and c.argmax_agreement is not None else "-",
            _size(o.size_bytes) if o.size_bytes and o.kept else "-",
            f"{o.seconds:.1f} s",
            "[green]kept[/]" if o.kept else "[red]left out[/]",
        )
    return t


def reasons(outcomes: list[Outcome]) -> list[str]:
    """One line per variant left out: the converter and what stopped it."""
    return [f"{o.variant} left out: {o.reason}" for o in outcomes if not o.kept]


def console() -> Console:
    """Wide enough for the table when the output is a pipe or a log (rich assumes 80)."""
    c = Console(highlight=False)
    return c if c.is_terminal else Console(highlight=False, width=160)

"""The peer comparison's arithmetic: ratios to the floor and to the best peer, per run,
and a clean skip where the harness or its environments are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import peers


def row(target: str, protocol: str, c: int, rps: float, p50: float, cpu: float = 0.0,
        run: int = 1, ok: bool = True) -> dict[str, object]:  # fmt: skip
    return {"target": target, "protocol": protocol, "model": "digits", "concurrency": c,
            "throughput": rps, "p50_ms": p50, "server_cpu_us_per_req": cpu, "run": run,
            "ok": ok}  # fmt: skip


ROWS = [
    row("floor-grpc", "grpc", 1, 1400, 0.70),
    row("kserve", "grpc", 16, 1600, 9.0), row("kserve", "grpc", 64, 1500, 40),
    row("mlserver-pw0", "grpc", 16, 1900, 8.0), row("mlserver-pw0", "grpc", 64, 2000, 30),
    row("servegate", "grpc", 1, 900, 0.91), row("servegate", "grpc", 16, 2850, 5.0, cpu=300),
    row("servegate", "grpc", 64, 3000, 20),
    row("servegate-w2", "grpc", 64, 4500, 15),
    row("servegate", "grpc", 16, 99999, 1.0, run=2),  # another run: never mixed in
    row("mlserver-pw0", "grpc", 16, 99999, 1.0, ok=False),  # a failed cell: ignored
]  # fmt: skip


def test_ratios_against_the_floor_and_the_best_peer_of_the_same_run() -> None:
    found = peers.cells(ROWS, run=1)
    r = peers.ratios(found, "servegate", "grpc")
    assert r["p50_vs_floor"] == pytest.approx(0.91 / 0.70)
    assert r["c16"] == pytest.approx(2850 / 1900) and r["c16_peer"].startswith("mlserver-pw0")
    assert r["c64"] == pytest.approx(3000 / 2000)
    assert r["cpu_us"] == 300


def test_missing_cells_leave_their_ratio_out() -> None:
    r = peers.ratios(peers.cells(ROWS, run=1), "servegate", "http")
    assert set(r) == {"target", "protocol"}


def test_worker_scaling_is_against_one_worker_at_c64() -> None:
    assert peers.scaling(peers.cells(ROWS, run=1), "grpc", [1, 2]) == {
        1: 1.0, 2: pytest.approx(1.5)
    }  # fmt: skip


def test_targets_for_each_worker_count_get_their_own_ports() -> None:
    one, two = peers.add_target(1, 0), peers.add_target(2, 1)
    assert one.startswith("name=servegate,") and "--workers 1" in one
    assert two.startswith("name=servegate-w2,") and "--workers 2" in two
    assert "18000" in one and "18010" in two


def test_without_the_harness_it_says_what_is_missing_and_succeeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert peers.missing(tmp_path / "none", tmp_path) != []
    code = peers.main(["--harness", str(tmp_path / "none")])
    assert code == 0
    assert "peer comparison skipped" in capsys.readouterr().out

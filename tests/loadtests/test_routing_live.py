"""`servegate bench routing` against a gateway over the real onnx and jax runners.

A short run (a second of load per cell): the fault and each policy go in through the
admin routes, every request is answered, the client's view (who answered, hedged,
mirrored) agrees with the gateway's /metrics, and the gateway's routing and faults are
as they were afterwards. Speeds are the benchmark's output, never asserted here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.config import Repository
from loadtests import report
from tests.live import LiveRunners, RunningGateway, start_gateway

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def two(repository: Repository, runners: LiveRunners) -> Iterator[RunningGateway]:
    gw = start_gateway(repository, {"onnx": runners.hop("onnx"), "jax": runners.hop("jax")})
    yield gw
    gw.stop()


@pytest.mark.timeout(300)
def test_routing_bench_drives_each_policy_and_restores_the_gateway(
    two: RunningGateway, tmp_path: Path
) -> None:
    with httpx.Client(base_url=two.http_url, timeout=30) as http:
        before = http.get("/admin/models/digits/routing").json()
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "bench", "routing",
         "--url", two.http_url, "--grpc-address", two.grpc_address,
         "--fault", "onnx:delay_ms=50,delay_percent=20",
         "--policy", "pinned", "--policy", "hedged:after_ms=10,budget=0.5", "--policy", "mirror",
         "--concurrency", "1,4", "--duration", "1", "--warmup", "0.3", "--rounds", "1",
         "--check-every", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = report.load(out)
    routing = doc["routing"]
    assert routing["faults"] == {"onnx": {"delay_ms": 50, "delay_percent": 20}}
    assert routing["baseline"] == "pinned" and routing["restore_problems"] == []
    cells = {(c["arm"], c["concurrency"]): c for c in routing["cells"]}
    assert set(cells) == {
        (a, c) for a in ("pinned", "hedged:after_ms=10,budget=0.5", "mirror") for c in (1, 4)
    }
    for c in cells.values():
        assert c["requests"] > 0 and c["ok"] == c["requests"], c["errors"]
        assert sum(c["answered_by"].values()) == c["requests"]
        lat = c["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    for conc in (1, 4):
        pinned = cells[("pinned", conc)]
        assert set(pinned["answered_by"]) == {"onnx"} and pinned["hedges"]["sent"] == 0
        hedged = cells[("hedged:after_ms=10,budget=0.5", conc)]
        assert hedged["hedges"]["sent"] > 0  # a fifth of onnx's calls wait 50 ms > 10 ms
        assert hedged["hedged_answers"] == hedged["hedges"]["sent"]  # client = /metrics
        assert hedged["answered_by"].get("jax", 0) == hedged["hedges"]["won"]
        mirror = cells[("mirror", conc)]
        assert set(mirror["answered_by"]) == {"onnx"}
        assert sum(mirror["shadows"].values()) == mirror["requests"]  # every copy ended
        assert mirror["parity"]["within_1e-4"] == mirror["parity"]["compared"] > 0
    judged = {(r["arm"], r["concurrency"]): r["goal"] for r in routing["comparisons"]}
    assert set(judged) == {k for k in cells if k[0] != "pinned"}
    assert all(goal is not None for goal in judged.values())
    assert "## Routing policies" in (out / "report.md").read_text()
    assert 'id="routing-latency"' in (out / "index.html").read_text()
    with httpx.Client(base_url=two.http_url, timeout=30) as http:
        assert http.get("/admin/models/digits/routing").json() == before

"""`servegate bench` end to end: the whole system started by the bench, real Locust runs.

Covers whatever variants the repository declares for `digits`: every one of them over
every protocol and straight to its runner, in a quick bench; then a runner killed
mid-bench, which must show up as failures in its cells, not as a crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import Repository
from loadtests import analysis, plots, report, wire

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _bench(*args: str) -> list[str]:
    """The bench through the CLI, as a user runs it (`servegate bench ...`)."""
    return [sys.executable, "-m", "gateway", "bench", *args]


@pytest.mark.timeout(900)
def test_quick_bench_over_every_variant_and_protocol(
    tmp_path: Path, repository: Repository
) -> None:
    out = tmp_path / "report"
    done = subprocess.run(
        _bench("--quick", "--concurrency", "1", "--duration", "2", "--warmup", "0.5",
               "--no-build", "--out", str(out)),
        capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = report.load(out)

    variants = list(repository["digits"].variants)
    expected = {(v, "gateway", p) for v in variants for p in wire.PROTOCOLS}
    expected |= {(v, "direct", "grpc") for v in variants}
    assert {(c["variant"], c["target"], c["protocol"]) for c in doc["cells"]} == expected
    for c in doc["cells"]:
        assert c["requests"] > 0, c["id"]
        assert c["failures"] == 0, (c["id"], c["errors"])
        assert 0 < c["p50_ms"] <= c["p90_ms"] <= c["p99_ms"], c["id"]
        assert Path(out / f"{c['csv_prefix']}_stats.csv").is_file()
        if c["target"] == "direct":
            assert c["wire"] == repository["digits"].variants[c["variant"]].protocol
        assert "gateway" in c["resources"] and "locust" in c["resources"]
    assert doc["environment"]["versions"]["servegate"]

    html = (out / "index.html").read_text()
    for plot_id in plots.plot_ids(doc):
        assert f'id="{plot_id}"' in html, plot_id
    assert 'id="environment"' in html and doc["environment"]["cpu_model"] in html
    md = (out / "report.md").read_text()
    assert "## Verdicts" in md and " | ".join(report.VERDICT_HEADER) in md

    # the same report compared with itself: nothing changed
    cmp_md = tmp_path / "compare.md"
    done = subprocess.run(
        _bench("compare", str(out), str(out), "--markdown", str(cmp_md), "--fail-on-worse"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(doc['cells'])} matched cells: 0 worse, 0 better" in cmp_md.read_text()


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    until = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"bench exited early with {proc.returncode}"
        assert time.monotonic() < until, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.timeout(600)
def test_a_runner_stopped_mid_bench_fails_its_cells_not_the_bench(tmp_path: Path) -> None:
    out = tmp_path / "report"
    log = tmp_path / "bench.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loadtests.bench", "--models", "digits",
             "--variants", "onnx,jax", "--protocols", "grpc", "--concurrency", "1",
             "--duration", "2", "--warmup", "0", "--no-build", "--out", str(out)],
            stdout=sink, stderr=subprocess.STDOUT,
            # One death is a crash loop: the killed runner stays down (FAILED) instead of
            # being healed, so its cells must fail while the bench goes on.
            env={**os.environ, "SERVEGATE_CRASH_LOOP_DEATHS": "1"},
        )  # fmt: skip
        try:
            _wait_for(out / "system" / "ready.json", proc, 180)
            ready = json.loads((out / "system" / "ready.json").read_text())
            # once the first cell (onnx through the gateway) is done, kill the jax runner
            _wait_for(out / "locust" / "digits-onnx-gateway-grpc-c1-b1_summary.json", proc, 180)
            os.killpg(ready["runners"]["jax"]["pid"], signal.SIGKILL)
            assert proc.wait(timeout=400) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    doc = report.load(out)
    cells = {(c["variant"], c["target"]): c for c in doc["cells"]}
    assert set(cells) == {("onnx", "gateway"), ("onnx", "direct"), ("jax", "gateway"),
                          ("jax", "direct")}  # fmt: skip
    for target in ("gateway", "direct"):
        assert cells[("onnx", target)]["failures"] == 0
        jax = cells[("jax", target)]
        assert jax["requests"] > 0 and jax["failures"] > 0 and jax["errors"], jax
    verdict = next(v for v in analysis.verdicts(doc["cells"]) if v["protocol"] == "grpc")
    assert verdict["failing"] == ["jax"] and verdict["fastest_p50"]["variant"] == "onnx"
    assert (out / "index.html").is_file()

"""Triton's perf_analyzer measures the gateway with no extra flags, for every variant.

perf_analyzer asks for the model's metadata and configuration, infers, and reads the
statistics extension (we advertise it), so a run that ends with exit 0 and a throughput
line exercised all three. Figures go to the report, not to assertions. It is found on
PATH or installed as `servegate doctor --install perf_analyzer` does; where it cannot be
installed (no registry), the tests say so as a skip.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gateway.doctor import ToolError, find_perf_analyzer, install_perf_analyzer
from tests.live import RunningGateway

pytestmark = [pytest.mark.conformance, pytest.mark.integration, pytest.mark.slow]

QUICK = ["--measurement-interval", "1000", "--stability-percentage", "1000", "--max-trials", "3"]


@pytest.fixture(scope="module")
def perf_analyzer() -> Path:
    found = find_perf_analyzer()
    if found is not None:
        return found
    try:
        return install_perf_analyzer()
    except (ToolError, OSError) as exc:
        pytest.skip(f"perf_analyzer cannot be installed here: {exc}")


def run(perf_analyzer: Path, *args: str) -> str:
    done = subprocess.run(
        [str(perf_analyzer), *args, *QUICK], capture_output=True, text=True, timeout=120
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "error" not in out.lower(), out[-3000:]
    (throughput,) = re.findall(r"Throughput: ([0-9.]+) infer/sec", out)[:1]
    assert float(throughput) > 0
    print(f"\nperf_analyzer {' '.join(args)}: {throughput} infer/sec")
    return out


@pytest.mark.parametrize("variant", ["onnx", "jax", "tensorflow", "pytorch"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_every_variant_over_both_protocols(
    full_gateway: RunningGateway, perf_analyzer: Path, variant: str, protocol: str
) -> None:
    url = full_gateway.grpc_address if protocol == "grpc" else full_gateway.http_url[7:]
    out = run(perf_analyzer, "-m", f"digits@{variant}", "-u", url, "-i", protocol)
    assert "Server:" in out and "Successful request count" in out  # our statistics


def test_json_tensors_and_explicit_shapes(
    full_gateway: RunningGateway, perf_analyzer: Path
) -> None:
    url = full_gateway.http_url[7:]
    run(perf_analyzer, "-m", "digits", "-u", url, "-i", "http", "--input-tensor-format", "json",
        "--output-tensor-format", "json")  # fmt: skip
    run(perf_analyzer, "-m", "digits", "-u", full_gateway.grpc_address, "-i", "grpc",
        "--shape", "pixels:64")  # fmt: skip


def test_a_batched_compute_bound_model(full_gateway: RunningGateway, perf_analyzer: Path) -> None:
    run(perf_analyzer, "-m", "resnet18@onnx", "-u", full_gateway.grpc_address, "-i", "grpc",
        "-b", "2")  # fmt: skip

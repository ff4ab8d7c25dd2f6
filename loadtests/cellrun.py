"""Load tests: runs one cell of the matrix as a headless Locust subprocess and reads its result.

Locust writes its CSVs and the locustfile's summary under `<out>/locust/<cell id>*`; the
resource sampler runs over exactly the measured window (from the locustfile's
`.measuring` marker, i.e. after warm-up, to its summary file). A Locust run that hangs
is killed after its run time plus a grace period; whatever happened, the cell gets a
result (failures, or no statistics), never an exception that would end the bench.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from loadtests.matrix import Cell
from loadtests.resources import Nvml, Sampler
from loadtests.results import cell_result
from loadtests.system import System

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STARTUP_SLACK_S = 1  # Locust's run-time clock starts before the first user does
HANG_GRACE_S = 60.0


@dataclass(frozen=True)
class CellSettings:
    duration_s: float
    warmup_s: float
    repository: Path
    request_timeout_s: float = 10.0


def locust_argv(
    cell: Cell,
    system: System,
    endpoint: str,
    prefix: Path,
    s: CellSettings,
    key_file: str | None = None,
) -> list[str]:
    """The Locust command line for one cell (`endpoint`: gateway gRPC or the runner's;
    `key_file`: TorchServe's keys, for a cell that calls it directly)."""
    run_time = math.ceil(s.warmup_s + s.duration_s) + STARTUP_SLACK_S
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--headless", "--only-summary", "--loglevel", "WARNING",
        "-u", str(cell.concurrency), "-r", str(cell.concurrency), "-t", f"{run_time}s",
        "--csv", str(prefix), "--exit-code-on-error", "0",
        "--host", system.http_url, "--grpc-address", endpoint,
        "--model", cell.model, "--variant", cell.variant, "--protocol", cell.protocol,
        "--batch-size", str(cell.batch_size), "--target", cell.target, "--wire", cell.wire,
        "--repository", str(s.repository), "--request-timeout", str(s.request_timeout_s),
        "--warmup-s", str(s.warmup_s), "--summary-file", f"{prefix}_summary.json",
        *(["--key-file", key_file] if key_file else []),
    ]  # fmt: skip


def run_cell(
    cell: Cell,
    system: System,
    endpoint: str,
    out: Path,
    settings: CellSettings,
    *,
    nvml: Nvml | None = None,
    on_tick: Callable[[float], None] | None = None,
    key_file: str | None = None,
) -> dict[str, Any]:
    """Runs one cell; returns its results.json entry. `on_tick(fraction)` reports progress."""
    folder = out / "locust"
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / cell.id
    summary = Path(f"{prefix}_summary.json")
    marker = Path(f"{summary}.measuring")
    for stale in (summary, marker):
        stale.unlink(missing_ok=True)
    argv = locust_argv(cell, system, endpoint, prefix, settings, key_file)
    run_time = math.ceil(settings.warmup_s + settings.duration_s) + STARTUP_SLACK_S
    groups = system.processes()
    sampler: Sampler | None = None
    exit_code: int | None = None
    t0 = time.monotonic()
    with open(f"{prefix}.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        with contextlib.suppress(psutil.Error):
            groups["locust"] = [psutil.Process(proc.pid)]
        try:
            while proc.poll() is None:
                if sampler is None and marker.exists():
                    sampler = Sampler(lambda: groups, nvml=nvml)
                    sampler.start()
                if sampler is not None and summary.exists():
                    break  # the window is over; Locust is writing its last CSV rows
                if time.monotonic() - t0 > run_time + HANG_GRACE_S:
                    _kill(proc)
                    break
                if on_tick is not None:
                    on_tick(min(1.0, (time.monotonic() - t0) / (run_time + 1.0)))
                time.sleep(0.05)
            resources = sampler.stop() if sampler is not None else {}
            sampler = None
            try:
                exit_code = proc.wait(timeout=HANG_GRACE_S)
            except subprocess.TimeoutExpired:
                _kill(proc)
        finally:
            if sampler is not None:
                sampler.stop()
            if proc.poll() is None:
                _kill(proc)
    return cell_result(cell, prefix, resources=resources, exit_code=exit_code, relative_to=out)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

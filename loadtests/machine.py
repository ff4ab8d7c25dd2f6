"""Load tests: the machine and software a bench ran on, for the report's environment section.

Figures mean little without it: CPU model and cores, memory, load, the GPU and its
driver (NVML) if any, and the version of every framework, runner and servegate itself.
Versions are read from package metadata, never by importing the frameworks.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from typing import Any

import psutil

from loadtests.resources import Nvml

# distribution names whose versions the report shows (the ones installed)
PACKAGES = (
    "servegate", "onnxruntime", "onnxruntime-gpu", "jax", "jaxlib", "tensorflow-cpu",
    "tensorflow", "tensorflow-serving-api", "torch", "torchserve", "torch-model-archiver",
    "grpcio", "protobuf", "numpy", "fastapi", "uvicorn", "uvloop", "locust", "gevent",
    "geventhttpclient", "plotly", "psutil", "nvidia-ml-py",
)  # fmt: skip


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def java_version() -> str | None:
    """TorchServe's frontend runs on it."""
    try:
        done = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[0] if lines else None


def describe(nvml: Nvml | None) -> dict[str, Any]:
    """Everything the report's environment section shows (except bench settings)."""
    mem = psutil.virtual_memory()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu_model": cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(mem.total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in load],
        "gpu": nvml.describe() if nvml else None,
        "java": java_version(),
        "versions": versions(),
    }

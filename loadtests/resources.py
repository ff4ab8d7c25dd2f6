"""Load tests: CPU, memory and GPU use per process while one cell runs.

A background thread samples every `interval` seconds: CPU time (psutil; user + system,
so CPU % is exact over the window, not an average of instant readings), RSS, and, where
NVML exists (pynvml from nvidia-ml-py) and sees a GPU, each process's GPU utilisation
and memory. Processes are grouped by label (gateway, onnx, torchserve/worker, locust,
...); a process that exits mid-cell simply stops counting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

Groups = Callable[[], Mapping[str, list[psutil.Process]]]


class Nvml:
    """Per-process GPU use through NVML; `Nvml.open()` is None where there is no GPU."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles
        self._last_seen = 0

    @classmethod
    def open(cls) -> Nvml | None:
        try:
            import pynvml  # nvidia-ml-py; optional
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            return None
        return cls(pynvml, handles) if handles else None

    def describe(self) -> dict[str, Any]:
        n = self._nvml
        gpus = []
        for h in self._handles:
            name = n.nvmlDeviceGetName(h)
            mem = n.nvmlDeviceGetMemoryInfo(h)
            gpus.append(
                {
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "memory_mb": round(mem.total / 2**20),
                }
            )
        driver = n.nvmlSystemGetDriverVersion()
        return {
            "driver": driver.decode() if isinstance(driver, bytes) else str(driver),
            "gpus": gpus,
        }

    def sample(self) -> tuple[dict[int, float], dict[int, float], float]:
        """(pid -> SM util %, pid -> used MB, mean device util %) since the last call."""
        n = self._nvml
        util: dict[int, float] = {}
        mem: dict[int, float] = {}
        device: list[float] = []
        for h in self._handles:
            try:
                device.append(float(n.nvmlDeviceGetUtilizationRates(h).gpu))
                for p in n.nvmlDeviceGetComputeRunningProcesses(h):
                    used = p.usedGpuMemory or 0
                    mem[p.pid] = mem.get(p.pid, 0.0) + used / 2**20
                for s in n.nvmlDeviceGetProcessUtilization(h, self._last_seen):
                    util[s.pid] = max(util.get(s.pid, 0.0), float(s.smUtil))
            except Exception:  # NotFound when no sample is new; NotSupported on some GPUs
                continue
        self._last_seen = int(time.time() * 1e6)
        return util, mem, (sum(device) / len(device) if device else 0.0)


@dataclass
class _Series:
    cpu_s: float = 0.0
    cpu_pct: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    gpu_pct: list[float] = field(default_factory=list)
    gpu_mb: list[float] = field(default_factory=list)


class Sampler:
    """Samples `groups()` (label -> processes) from `start()` to `stop()` in a thread."""

    def __init__(self, groups: Groups, interval: float = 0.25, nvml: Nvml | None = None) -> None:
        self._groups = groups
        self._interval = interval
        self._nvml = nvml
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._series: dict[str, _Series] = {}
        self._cpu: dict[int, float] = {}  # pid -> cpu seconds at the last tick
        self._device_gpu: list[float] = []
        self._t0 = 0.0
        self._elapsed = 0.0
        self._busy0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = _machine_busy_s()
        self._tick(prime=True)
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            self._tick(dt=now - last)
            last = now

    def _tick(self, dt: float = 0.0, prime: bool = False) -> None:
        gpu_util, gpu_mem, device = self._nvml.sample() if self._nvml else ({}, {}, 0.0)
        if self._nvml and not prime:
            self._device_gpu.append(device)
        for label, procs in self._groups().items():
            series = self._series.setdefault(label, _Series())
            cpu_delta, rss, g_util, g_mem = 0.0, 0.0, 0.0, 0.0
            for p in procs:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        cpu = t.user + t.system
                        rss += p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                before = self._cpu.get(p.pid)
                self._cpu[p.pid] = cpu
                if before is not None and cpu >= before:
                    cpu_delta += cpu - before
                g_util += gpu_util.get(p.pid, 0.0)
                g_mem += gpu_mem.get(p.pid, 0.0)
            if prime:
                continue
            series.cpu_s += cpu_delta
            if dt > 0:
                series.cpu_pct.append(100.0 * cpu_delta / dt)
            series.rss_mb.append(rss)
            if self._nvml:
                series.gpu_pct.append(g_util)
                series.gpu_mb.append(g_mem)

    def stop(self) -> dict[str, Any]:
        """Ends sampling; label -> cpu_s, cpu_pct (mean over the window), cpu_pct_max,
        rss_mb (mean), rss_mb_max, and gpu_pct / gpu_mb_max where NVML exists."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._elapsed = time.monotonic() - self._t0
        out: dict[str, Any] = {}
        for label, s in self._series.items():
            if not s.rss_mb:
                continue
            row: dict[str, Any] = {
                "cpu_s": round(s.cpu_s, 4),
                "cpu_pct": round(100.0 * s.cpu_s / self._elapsed, 2) if self._elapsed else 0.0,
                "cpu_pct_max": round(max(s.cpu_pct, default=0.0), 2),
                "rss_mb": round(sum(s.rss_mb) / len(s.rss_mb), 1),
                "rss_mb_max": round(max(s.rss_mb), 1),
            }
            if s.gpu_pct:
                row["gpu_pct"] = round(sum(s.gpu_pct) / len(s.gpu_pct), 1)
                row["gpu_mb_max"] = round(max(s.gpu_mb), 1)
            out[label] = row
        if self._device_gpu:
            out["_device"] = {"gpu_pct": round(sum(self._device_gpu) / len(self._device_gpu), 1)}
        if self._elapsed > 0:
            # Everything else the machine ran meanwhile (other jobs on a shared machine): a
            # cell where this is high measured a busy machine.
            busy = _machine_busy_s() - self._busy0
            ours = sum(s.cpu_s for s in self._series.values())
            out["_machine"] = {
                "cpu_pct": round(100.0 * busy / self._elapsed, 1),
                "other_cpu_pct": round(100.0 * max(0.0, busy - ours) / self._elapsed, 1),
                "cores": psutil.cpu_count(),
            }
        return out


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy, all cores together."""
    t = psutil.cpu_times()
    fields = ("user", "nice", "system", "irq", "softirq")  # guest time is inside user
    return float(sum(getattr(t, f, 0.0) for f in fields))

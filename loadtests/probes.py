"""Load tests: what the benchmarks learn about a running system from outside it.

The gateway's process (to sample its RSS) when only its port is known: `servegate up`
serves the gateway in its own process, but its ready file names only the runners'
pids, so a system the benchmark did not start is found as the process listening on
the HTTP port. The runner restart count from the gateway's Prometheus `/metrics`.
Which process to SIGKILL for a runner kind: the runner itself, or for TorchServe its
Java frontend (a descendant of the process that the ready file names).
"""

from __future__ import annotations

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

RESTARTS_METRIC = "servegate_runner_restarts_total"
TORCHSERVE_TARGETS = ("frontend", "launcher")


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP `port` (any address), if this user may see it."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return int(c.pid)
    return None


def restart_count(metrics_text: str, runner: str) -> float:
    """`servegate_runner_restarts_total{runner=...}` in a Prometheus exposition; absent: 0."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == RESTARTS_METRIC and sample.labels.get("runner") == runner:
                total += float(sample.value)
    return total


def fetch_metrics(http_url: str, timeout_s: float = 5.0) -> str | None:
    """The gateway's /metrics text, or None when it cannot be read (then restarts count 0)."""
    try:
        reply = httpx.get(http_url.rstrip("/") + "/metrics", timeout=timeout_s)
    except httpx.HTTPError:
        return None
    return reply.text if reply.status_code == 200 else None


def kill_target(kind: str, pid: int, torchserve: str = "frontend") -> psutil.Process:
    """The process to SIGKILL to crash runner `kind` whose recorded pid is `pid`.

    For TorchServe the recorded pid is its launcher (`ts.model_server --foreground`), or
    a guard process above it; what serves is the Java frontend, found among its
    descendants. `torchserve="launcher"` picks the `ts.model_server` process instead (the
    recorded one when none is found)."""
    root = psutil.Process(pid)
    if kind != "torchserve":
        return root
    if torchserve not in TORCHSERVE_TARGETS:
        raise ValueError(f"torchserve target must be one of {TORCHSERVE_TARGETS}")
    for proc in (root, *root.children(recursive=True)):
        try:
            if torchserve == "frontend" and proc.name() == "java":
                return proc
            if torchserve == "launcher" and "ts.model_server" in proc.cmdline():
                return proc
        except psutil.Error:
            continue
    if torchserve == "launcher":
        return root
    raise LookupError(f"no Java frontend among the descendants of TorchServe's process {pid}")

"""docker/monitoring, offline: the Prometheus config passes promtool, and every query of
the Grafana dashboard parses and names metrics the gateway really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway.metrics import Metrics
from tests.containers.tools import MONITORING, need, run

pytestmark = pytest.mark.container

DASHBOARD = MONITORING / "grafana" / "servegate.json"
# Grafana's variables, as a query sees them once expanded.
VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$model": ".*", "$variant": ".*"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    found += [v["query"]["query"] for v in doc["templating"]["list"]]
    return found


def expand(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def exported_names() -> set[str]:
    """Every sample name the gateway's /metrics can carry."""
    metrics = Metrics(CollectorRegistry())
    metrics.watch_load(lambda: {"m@v": 1}, lambda: 0)
    names = set()
    for family in metrics.registry.collect():
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def test_prometheus_config() -> None:
    done = run([need("promtool"), "check", "config", str(MONITORING / "prometheus.yml")])
    assert done.returncode == 0, done.stdout + done.stderr


def test_scrapes_the_gateway_and_torchserve() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["gateway"] == ["gateway:8000"]
    assert targets["torchserve"] == ["torchserve:8082"]


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    rules: dict[str, Any] = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": expand(q)}
                    for i, q in enumerate(queries())
                    if not q.startswith("label_values")
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = run([need("promtool"), "check", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_promql_check_can_fail(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    bad = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (a) (rate(m["}]}]}
    path.write_text(yaml.safe_dump(bad))
    assert run([need("promtool"), "check", "rules", str(path)]).returncode != 0


def test_dashboard_names_only_exported_metrics() -> None:
    exported = exported_names()
    used = {m for q in queries() for m in re.findall(r"\b(servegate_[a-z_]+)", q)}
    assert used, "the dashboard asks for no gateway metric"
    assert used <= exported, used - exported
    # The panels: latency per variant, throughput, batch rows, queue, errors,
    # runner health, restarts.
    for needed in ("servegate_request_seconds_bucket", "servegate_requests_total",
                   "servegate_request_batch_rows_bucket", "servegate_inflight_requests",
                   "servegate_variant_up", "servegate_runner_restarts_total"):  # fmt: skip
        assert needed in used, needed

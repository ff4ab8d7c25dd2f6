"""Load tests: the gateway's admin routes as the routing benchmark uses them, and the undo.

`PUT /admin/models/{m}/routing` (model.yaml's `routing:` as JSON), `PUT|DELETE
/admin/models/{m}/variants/{v}/fault`, `GET /admin/models/{m}/routing` (the policy in
force and the faults) and `/metrics`. `Admin.snapshot` records what was in force before
the benchmark touched anything; `Admin.restore` puts it back: the routing, and for every
variant the benchmark faulted, the fault it had before (or none). The benchmark calls
`restore` in a `finally`, so an interrupted run leaves a shared gateway as it found it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

ADMIN_TIMEOUT_S = 30.0


class AdminError(RuntimeError):
    """An admin call the gateway refused (the message has its status and error)."""


@dataclass(frozen=True)
class Snapshot:
    """A model's routing and faults as the benchmark found them."""

    routing: dict[str, Any]
    faults: dict[str, dict[str, Any]]


class Admin:
    """Sync admin calls to one gateway (between cells, never under load)."""

    def __init__(
        self,
        http_url: str,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=http_url, timeout=ADMIN_TIMEOUT_S, headers=headers, transport=transport
        )

    def _call(self, method: str, path: str, doc: Any = None) -> Any:
        reply = self.http.request(method, path, json=doc)
        if reply.status_code != 200:
            try:
                why = reply.json().get("error", reply.text)
            except ValueError:
                why = reply.text
            raise AdminError(f"{method} {path}: {reply.status_code} {why}")
        return reply.json()

    def routing(self, model: str) -> dict[str, Any]:
        """{"routing": the policy in force, "faults": {variant: fault}}."""
        doc: dict[str, Any] = self._call("GET", f"/admin/models/{model}/routing")
        return doc

    def set_routing(self, model: str, routing: dict[str, Any]) -> None:
        self._call("PUT", f"/admin/models/{model}/routing", routing)

    def set_fault(self, model: str, variant: str, fault: dict[str, Any] | None) -> None:
        """Injects `fault` into `variant`'s calls; None clears it."""
        path = f"/admin/models/{model}/variants/{variant}/fault"
        self._call("DELETE", path) if fault is None else self._call("PUT", path, fault)

    def metrics(self) -> str:
        reply = self.http.get("/metrics")
        reply.raise_for_status()
        return reply.text

    def snapshot(self, model: str) -> Snapshot:
        doc = self.routing(model)
        return Snapshot(dict(doc["routing"]), {v: dict(f) for v, f in doc["faults"].items()})

    def restore(self, model: str, before: Snapshot, faulted: Iterable[str]) -> list[str]:
        """Puts `before` back for the routing and each variant in `faulted`; every step is
        tried even when one fails, and the failures come back as messages."""
        problems = []
        steps = [(None, lambda: self.set_routing(model, before.routing))]
        for variant in dict.fromkeys(faulted):
            fault = before.faults.get(variant)
            steps.append((variant, lambda v=variant, f=fault: self.set_fault(model, v, f)))
        for variant, step in steps:
            try:
                step()
            except (AdminError, httpx.HTTPError) as exc:
                problems.append(f"{'routing' if variant is None else variant}: {exc}")
        return problems

    def close(self) -> None:
        self.http.close()

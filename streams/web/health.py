"""Liveness and readiness of a worker, and their HTTP views on the web port."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from streams.faust.commit_gate import work_failure
from streams.runtime.metrics import Metrics

__all__ = ["Readiness", "broker_lost", "install_health_views"]


def broker_lost(app: faust.App) -> bool:
    """True while the consumer cannot reach the broker.

    Two signals from faust-streaming 0.15's aiokafka driver (the consumer thread's
    `AIOKafkaConsumer`), either one enough:
    - no open connection: every socket to the cluster saw EOF or failed to connect
      (noticed as soon as the broker goes away);
    - the group coordinator is marked dead: a heartbeat could not reach it (noticed
      within one heartbeat interval).
    aiokafka reconnects on the next request once the broker answers again. If the
    internals are not there (not started, other driver), it says False.
    """
    thread = getattr(getattr(app, "_consumer", None), "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None:
        return False
    if getattr(coordinator, "coordinator_id", 0) is None:
        return True
    connections = getattr(getattr(consumer, "_client", None), "_conns", None)
    if not isinstance(connections, dict):
        return False
    return not any(conn.connected() for conn in connections.values())


class Readiness:
    """Ready = the group has assigned partitions, table recovery has finished, and the
    consumer still reaches the broker.

    Not ready before the first assignment, while rebalancing, while recovering, and while
    the broker (the group coordinator) is unreachable.
    """

    def __init__(self, app: faust.App, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics
        self._assigned = False
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)

    def _on_revoked(self, sender: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        self._assigned = False
        self._metrics.ready.set(0)

    def _on_assigned(self, sender: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        self._assigned = True

    def reasons(self) -> list[str]:
        """Why the worker is not ready (empty when it is)."""
        app = self._app
        reasons = []
        failed = work_failure(app)
        if failed is not None:
            reasons.append(f"failed: {failed!r} (the worker is stopping)")
        if not self._assigned:
            reasons.append("waiting for partition assignment")
        elif broker_lost(app):
            reasons.append("broker unreachable (group coordinator lost)")
        if app.rebalancing:
            reasons.append("rebalancing")
        recovery: Any = getattr(app.tables, "recovery")  # noqa: B009  (untyped in Faust)
        if recovery.in_recovery or not recovery.completed.is_set():
            reasons.append("recovering tables")
        self._metrics.ready.set(0 if reasons else 1)
        return reasons


def install_health_views(app: faust.App, readiness: Readiness) -> None:
    """`/healthz`: the event loop answers. `/readyz`: 200 when ready, else 503 with reasons."""

    @app.page("/healthz")
    class Healthz(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            reasons = readiness.reasons()
            if reasons:
                return self.json({"status": "not ready", "reasons": reasons}, status=503)
            return self.json({"status": "ready"})

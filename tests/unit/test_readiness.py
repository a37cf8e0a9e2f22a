"""Readiness reasons: assignment, rebalancing, recovery (a stand-in app; the HTTP views and
the real transitions are covered by the integration tests)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.health import Readiness
from streams.metrics import Metrics


class _Signal:
    def __init__(self) -> None:
        self.handlers: list[Any] = []

    def connect(self, handler: Any) -> None:
        self.handlers.append(handler)

    def send(self, *args: Any) -> None:
        for handler in self.handlers:
            handler(None, *args, signal=self)


def _app() -> Any:
    recovery = SimpleNamespace(in_recovery=False, completed=asyncio.Event())
    return SimpleNamespace(
        on_partitions_revoked=_Signal(),
        on_partitions_assigned=_Signal(),
        rebalancing=False,
        tables=SimpleNamespace(recovery=recovery),
    )


def test_ready_only_when_assigned_stable_and_recovered() -> None:
    app, metrics = _app(), Metrics()
    readiness = Readiness(app, metrics)
    assert "waiting for partition assignment" in readiness.reasons()

    app.on_partitions_assigned.send(set())
    app.tables.recovery.in_recovery = True
    assert readiness.reasons() == ["recovering tables"]
    assert metrics.ready._value.get() == 0

    app.tables.recovery.in_recovery = False
    app.tables.recovery.completed.set()
    assert readiness.reasons() == []
    assert metrics.ready._value.get() == 1

    app.rebalancing = True
    assert readiness.reasons() == ["rebalancing"]
    app.rebalancing = False
    app.on_partitions_revoked.send(set())
    assert readiness.reasons() == ["waiting for partition assignment"]
    assert metrics.ready._value.get() == 0

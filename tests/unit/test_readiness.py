"""Readiness reasons: assignment, rebalancing, recovery (a stand-in app; the HTTP views and
the real transitions are covered by the integration tests)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.runtime.metrics import Metrics
from streams.web.health import Readiness, broker_lost


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


class _Connection:
    def __init__(self, up: bool) -> None:
        self.up = up

    def connected(self) -> bool:
        return self.up


def _consumer_app(coordinator_id: int | None, connections: list[bool]) -> Any:
    client = SimpleNamespace(_conns={i: _Connection(up) for i, up in enumerate(connections)})
    coordinator = SimpleNamespace(coordinator_id=coordinator_id)
    consumer = SimpleNamespace(_coordinator=coordinator, _client=client)
    return SimpleNamespace(_consumer=SimpleNamespace(_thread=SimpleNamespace(_consumer=consumer)))


def test_broker_lost_when_coordinator_dead_or_no_connection_is_open() -> None:
    assert not broker_lost(_consumer_app(1, [True, False]))
    assert broker_lost(_consumer_app(None, [True]))  # a heartbeat could not reach it
    assert broker_lost(_consumer_app(1, [False, False]))  # every socket saw EOF
    assert broker_lost(_consumer_app(1, []))
    assert not broker_lost(SimpleNamespace())  # not started: no opinion


def test_a_failed_unit_of_work_makes_the_worker_not_ready_at_once() -> None:
    import faust

    from streams.faust.commit_gate import commit_gate
    from streams.runtime.metrics import Metrics
    from streams.web.health import Readiness

    app = faust.App("readiness-failure-test")
    readiness = Readiness(app, Metrics())
    commit_gate(app).fail(RuntimeError("send refused"))
    reasons = readiness.reasons()
    assert reasons[0] == "failed: RuntimeError('send refused') (the worker is stopping)"

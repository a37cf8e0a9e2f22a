"""Periodic gauges: consumer lag and assigned partitions per topic, rolling state size; and
freed heap memory handed back to the system."""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

import faust
from aiokafka.errors import IllegalStateError

from agents.rolling import RollingEngine
from streams.faust_compat import committed_offset
from streams.heap import heap_trimmer
from streams.metrics import Metrics

__all__ = ["attach_monitor", "refresh_gauges"]

_INTERVAL_S: Final = 2.0


def attach_monitor(app: faust.App, metrics: Metrics, engine: RollingEngine) -> None:
    """Register a timer that refreshes the gauges every couple of seconds."""
    seen: set[tuple[str, str]] = set()
    trim_heap = heap_trimmer()

    @app.timer(interval=_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def refresh() -> None:
        await refresh_gauges(app, metrics, engine, seen)
        trim_heap()


async def refresh_gauges(
    app: Any, metrics: Metrics, engine: Any, seen: set[tuple[str, str]]
) -> None:
    """Set the gauges; `seen` holds the lag labels set last time (removed when gone).

    A rebalance may revoke a partition while this runs (it awaits positions): such a
    partition is skipped. An exception here would crash the worker (a Faust timer)."""
    metrics.state_keys.labels(table="rolling-state").set(engine.key_count)
    metrics.state_windows.set(engine.pane_count)
    consumer: Any = app.consumer
    assignment = consumer.assignment()
    per_topic = Counter(tp.topic for tp in assignment)
    for topic in {t for t, _ in seen} | set(per_topic):
        metrics.assigned_partitions.labels(topic=topic).set(per_topic.get(topic, 0))
    current: set[tuple[str, str]] = set()
    for tp in assignment:
        if tp.topic.endswith("-changelog"):
            continue  # table changelogs are read for recovery, not consumed
        if tp not in consumer.assignment():
            continue  # revoked meanwhile
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        committed = committed_offset(app, tp)
        if committed is None:
            try:
                committed = await consumer.position(tp) or 0
            except IllegalStateError:
                continue  # revoked while asking
        labels = (tp.topic, str(tp.partition))
        metrics.consumer_lag.labels(*labels).set(max(0, highwater - committed))
        current.add(labels)
    for labels in seen - current:
        metrics.consumer_lag.remove(*labels)
    seen.clear()
    seen.update(current)

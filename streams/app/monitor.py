"""Periodic gauges: consumer lag and assigned partitions per topic, rolling state size; and
freed heap memory handed back to the system."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import Any, Final

import faust
from aiokafka.errors import IllegalStateError

from agents.rolling import RollingEngine
from streams.faust.consumer_state import committed_offset
from streams.runtime.heap import heap_trimmer
from streams.runtime.metrics import Metrics

__all__ = ["attach_monitor", "refresh_gauges"]

_INTERVAL_S: Final = 2.0


def attach_monitor(app: faust.App, metrics: Metrics, engine: RollingEngine) -> None:
    """Register a timer that refreshes the gauges every couple of seconds."""
    seen: set[tuple[str, str]] = set()
    shown: set[str] = set()
    trim_heap = heap_trimmer()

    @app.timer(interval=_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def refresh() -> None:
        await refresh_gauges(app, metrics, engine, seen, shown)
        trim_heap()


async def refresh_gauges(
    app: Any,
    metrics: Metrics,
    engine: Any,
    seen: set[tuple[str, str]],
    shown: set[str] | None = None,
) -> None:
    """Set the gauges; `seen` holds the lag labels set last time, `shown` the keyed
    partitions of the watermark gauges (removed when gone).

    A rebalance may revoke a partition while this runs (it awaits positions): such a
    partition is skipped. An exception here would crash the worker (a Faust timer)."""
    metrics.state_keys.labels(table="rolling-state").set(engine.key_count)
    metrics.state_windows.set(engine.pane_count)
    _event_time_gauges(metrics, engine, set() if shown is None else shown)
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


def _event_time_gauges(metrics: Metrics, engine: Any, shown: set[str]) -> None:
    """Per keyed partition here: how old its watermark is, and which source holds it back
    (the labels of partitions no longer here are removed)."""
    now_ms = int(time.time() * 1000)
    current = {str(p) for p in engine.partitions}
    for partition, state in list(engine.partitions.items()):
        label = str(partition)
        if state.watermark is not None:
            metrics.watermark_age.labels(partition=label).set((now_ms - state.watermark) / 1000)
        lags = state.clock.lag_ms(now_ms)
        if not lags:
            holder = -1
        elif any(lag is None for lag in lags.values()):
            holder = -2
        else:
            holder = max(lags, key=lambda source: lags[source] or 0)
        metrics.watermark_source.labels(partition=label).set(holder)
    for label in shown - current:
        for gauge in (metrics.watermark_age, metrics.watermark_source):
            with contextlib.suppress(KeyError):
                gauge.remove(label)
    shown.clear()
    shown.update(current)

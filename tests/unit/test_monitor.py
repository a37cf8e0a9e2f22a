"""The gauge timer: lag per assigned partition, and no crash when a rebalance revokes a
partition while the timer runs (an exception in a Faust timer stops the worker)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.types import TP

from streams.app.monitor import refresh_gauges
from streams.runtime.metrics import Metrics

A, B, C = TP("in", 0), TP("in", 1), TP("in", 2)


class Consumer:
    """Assignment A, B, C; asking B's position revokes B and C (a rebalance begins)."""

    def __init__(self) -> None:
        self.assigned = {A, B, C}
        self._committed_offset = {A: 7}
        self.ends = {A: 10, B: 20, C: 30}

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    def highwater(self, tp: TP) -> int:
        assert tp in self.assigned, "Partition is not assigned"  # as aiokafka does
        return self.ends[tp]

    async def position(self, tp: TP) -> int:
        self.assigned -= {B, C}
        raise IllegalStateError(f"No current assignment for partition {tp}")


def gauge(metrics: Metrics, name: str, **labels: str) -> Any:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_partition_revoked_while_the_timer_runs_is_skipped() -> None:
    metrics, consumer = Metrics(), Consumer()
    app = SimpleNamespace(consumer=consumer)
    engine = SimpleNamespace(key_count=5, pane_count=9, partitions={})
    seen: set[tuple[str, str]] = set()

    await refresh_gauges(app, metrics, engine, seen)

    assert gauge(metrics, "insights_consumer_lag", topic="in", partition="0") == 10 - 7
    assert gauge(metrics, "insights_consumer_lag", topic="in", partition="1") is None
    assert gauge(metrics, "insights_consumer_lag", topic="in", partition="2") is None
    assert seen == {("in", "0")}
    assert gauge(metrics, "insights_assigned_partitions", topic="in") == 3


async def test_watermark_gauges_name_the_source_holding_each_partition_back() -> None:
    from agents.rolling import PartitionState, WindowPlan
    from models.keyed import SourceReport
    from streams.runtime.windows import parse_windows

    now_ms = int(time.time() * 1000)
    held = PartitionState(WindowPlan(parse_windows("tumbling:60s"), 0), 0)
    held.observe(SourceReport(0, now_ms - 5_000, 2), now_ms)
    held.observe(SourceReport(1, now_ms - 90_000, 2), now_ms)
    waiting = PartitionState(WindowPlan(parse_windows("tumbling:60s"), 0), 0)
    waiting.observe(SourceReport(0, now_ms, 2), now_ms)  # source 1 never heard from
    metrics, shown = Metrics(), set[str]()
    engine = SimpleNamespace(key_count=0, pane_count=0, partitions={3: held, 4: waiting})
    app = SimpleNamespace(consumer=SimpleNamespace(assignment=set))

    await refresh_gauges(app, metrics, engine, set(), shown)

    age = gauge(metrics, "insights_watermark_age_seconds", partition="3")
    assert 90 <= age < 100
    assert gauge(metrics, "insights_watermark_holding_source", partition="3") == 1
    assert gauge(metrics, "insights_watermark_age_seconds", partition="4") is None
    assert gauge(metrics, "insights_watermark_holding_source", partition="4") == -2
    del engine.partitions[3]  # revoked
    await refresh_gauges(app, metrics, engine, set(), shown)
    assert gauge(metrics, "insights_watermark_holding_source", partition="3") is None
    assert shown == {"4"}

"""Bytes kept long are right-sized: orjson's `dumps` output can hold a 4 KiB buffer."""

from __future__ import annotations

import asyncio
import tracemalloc

import faust
import orjson
import pytest

from models.codec import right_sized
from streams.faust.table_writes import write_table
from tests.support.batches import RecordingProducer


def traced_bytes(make: object) -> int:
    """Bytes traced for what `make()` returns while it is alive."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()  # type: ignore[operator]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept
    return after - before


def test_right_sized_values_occupy_about_their_length() -> None:
    values = [orjson.dumps([i, "state", [1.5, 2.5]]) for i in range(2000)]
    length = sum(len(v) for v in values)

    used = traced_bytes(lambda: [right_sized(v) for v in values])

    assert [right_sized(v) for v in values] == values
    assert used <= length + 2000 * 64 + 32_768  # object headers and the list, not 4 KiB each


def test_write_table_keeps_right_sized_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    app = faust.App("pin-right-sized", broker="kafka://127.0.0.1:1", autodiscover=False)
    table = app.Table("pin", key_type=bytes, value_type=bytes)
    producer = RecordingProducer()
    monkeypatch.setattr(app.producer, "_ensure_producer", lambda: producer)
    value = orjson.dumps({"count": 3})

    asyncio.run(write_table(app, table, "keyed", 0, {b"k": value}))

    assert table.data[b"k"] == value
    assert table.data[b"k"] is not value  # the kept copy, not orjson's buffer
    assert [b.records for b in producer.batches] == [[(b"k", value, [])]]


def test_a_flush_of_many_keys_holds_its_writes_in_buffers_of_their_own_size() -> None:
    from agents.anomaly import AnomalyConfig
    from agents.rolling import PartitionState, WindowPlan
    from agents.rolling.dedup import JOURNAL_CHUNK_IDS
    from models.keyed import KeyedObservation, SourceReport
    from streams.runtime.windows import parse_windows

    plan = WindowPlan(parse_windows("tumbling:60s,hopping:300s/60s"), 30_000)
    config = AnomalyConfig(alpha=0.1, warmup=3, warning_z=3, critical_z=5, cooldown_ms=0)
    state = PartitionState(plan, dedup_ttl_ms=600_000, anomaly=config)
    keys = 2000
    for i in range(keys):
        record = KeyedObservation(
            "subject", f"s-{i}", f"e-{i}", "o1", f"s-{i}", None, "temp", 1.5, 1_795_780_800_000,
            None, 0, 0, 0,
        )  # fmt: skip
        state.offer(record, received_ms=i)
    state.observe(SourceReport(0, 1_795_780_800_000, 1), now_ms=keys)

    writes: dict[str, bytes | None] = {}
    used = traced_bytes(lambda: writes.update(state.take_persist("flush-1")[0]) or writes)

    values = [v for v in writes.values() if v is not None]
    journal = -(-keys // JOURNAL_CHUNK_IDS)  # records of the dedup journal
    assert len(values) == 2 * keys + 1 + journal  # a state and a baseline per key, clock
    assert used <= sum(len(v) for v in values) + len(writes) * 200 + 262_144  # not 4 KiB each


def test_heap_arenas_are_capped_unless_the_operator_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.runtime.heap import limit_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_arenas() is True  # glibc here (Debian, and the image)

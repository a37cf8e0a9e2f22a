"""`send_batched_caused_by` and `write_table`: records go out in one batch per destination
partition, in order, by the producer of the right transaction; the table and its persisted
offset follow. aiokafka's producer is a stand-in with real record batches (no broker)."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import faust
import pytest
from faust.types import TP

from streams.faust import sends
from streams.faust.sends import Outbound, send_batched_caused_by
from streams.faust.table_writes import write_table
from streams.faust.transactions import sent_in
from tests.support.batches import RecordingProducer

PARTITIONS = 12


def by_crc(topic: str, key: bytes) -> Any:
    """A stand-in partitioner (the real one needs broker metadata): crc32 of the key."""
    return TP(topic, zlib.crc32(key) % PARTITIONS)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> faust.App:
    app = faust.App("batched-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    monkeypatch.setattr(sends, "_key_partitions", {})
    monkeypatch.setattr(app.producer, "key_partition", by_crc)
    return app


def install(app: faust.App, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> RecordingProducer:
    producer = RecordingProducer(**kw)
    monkeypatch.setattr(app.producer, "_ensure_producer", lambda: producer)
    return producer


def test_records_go_out_in_one_batch_per_partition_in_order(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = install(app, monkeypatch)
    header = [("traceparent", b"00-abc-def-01")]
    records: list[Outbound] = [
        ("out", f"s-{i % 7}".encode(), f"v{i}".encode(), header if i == 3 else None)
        for i in range(40)
    ] + [("other", b"s-1", b"x", None)]

    deliveries = asyncio.run(
        send_batched_caused_by(app, records, source_topic="keyed", source_partition=0)
    )

    expected: dict[tuple[str, int], list[Any]] = {}
    for topic, key, value, headers in records:
        expected.setdefault((topic, zlib.crc32(key) % PARTITIONS), []).append(
            (key, value, headers or [])
        )
    sent = {(b.topic, b.partition): b.records for b in producer.batches}
    assert sent == expected
    assert len(producer.batches) == len(expected) == len(deliveries)


def test_a_full_batch_is_sent_and_the_rest_follow_in_order(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = install(app, monkeypatch, batch_bytes=1_024)
    values = [bytes([65 + i % 26]) * 100 for i in range(50)]
    records: list[Outbound] = [("out", b"k", v, None) for v in values]

    asyncio.run(
        send_batched_caused_by(app, records, source_topic="keyed", source_partition=0, partition=5)
    )

    assert len(producer.batches) > 3  # 5 KB in batches of 1 KiB
    assert {(b.topic, b.partition) for b in producer.batches} == {("out", 5)}
    assert [v for b in producer.batches for _, v, _ in b.records] == values


def test_a_record_larger_than_a_batch_goes_in_a_batch_of_its_own(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = install(app, monkeypatch, batch_bytes=1_024)
    big = b"x" * 5_000
    records: list[Outbound] = [("out", b"k", b"a", None), ("out", b"k", big, None)]
    asyncio.run(send_batched_caused_by(app, records, source_topic="keyed", source_partition=0))
    assert [b.records for b in producer.batches] == [[(b"k", b"a", [])], [(b"k", big, [])]]


def test_under_exactly_once_the_source_partitions_transaction_sends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = faust.App(
        "batched-eos",
        broker="kafka://127.0.0.1:1",
        autodiscover=False,
        processing_guarantee="exactly_once",
    )
    monkeypatch.setattr(sends, "_key_partitions", {})
    monkeypatch.setattr(app.producer, "key_partition", by_crc)
    monkeypatch.setattr(app, "in_worker", True)
    monkeypatch.setattr(app.assignor, "group_for_topic", lambda topic: 4)
    plain = install(app, monkeypatch)
    driver: Any = app.producer
    transactional = RecordingProducer()
    other = RecordingProducer()
    monkeypatch.setattr(
        driver,
        "_transaction_producers",
        {"batched-eos-4-3": transactional, "batched-eos-4-2": other},
    )
    monkeypatch.setattr(
        driver, "_trn_locks", {"batched-eos-4-3": asyncio.Lock(), "batched-eos-4-2": None}
    )
    records: list[Outbound] = [("out", b"s-1", b"v", None)]

    asyncio.run(send_batched_caused_by(app, records, source_topic="keyed", source_partition=3))

    assert [b.records for b in transactional.batches] == [[(b"s-1", b"v", [])]]
    assert plain.batches == other.batches == []
    assert sent_in(driver) == {"batched-eos-4-3"}  # its commit is due
    asyncio.run(send_batched_caused_by(app, [], source_topic="keyed", source_partition=2))
    assert sent_in(driver) == {"batched-eos-4-3"}  # nothing sent: no commit
    with pytest.raises(RuntimeError, match="no transactional producer for batched-eos-4-9"):
        asyncio.run(send_batched_caused_by(app, records, source_topic="keyed", source_partition=9))


def test_write_table_applies_writes_sends_them_and_records_the_persisted_offset(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = install(app, monkeypatch)
    table = app.Table("pin", key_type=bytes, value_type=bytes)
    persisted: list[tuple[TP, int]] = []
    monkeypatch.setattr(
        table.data, "set_persisted_offset", lambda tp, offset: persisted.append((tp, offset))
    )
    table.data[b"old"] = b"x"
    writes = {b"k": b"v", b"old": None, b"never-there": None, b"k2": b"w"}

    async def write_twice() -> list[Any]:
        first = await write_table(app, table, "keyed", 2, writes)
        second = await write_table(app, table, "keyed", 2, {b"k": b"v2"})
        return [await d for d in first + second]

    delivered = asyncio.run(write_twice())

    changelog = table.changelog_topic.get_topic_name()
    assert [(b.topic, b.partition, b.records) for b in producer.batches] == [
        (changelog, 2, [(b"k", b"v", []), (b"old", None, []), (b"k2", b"w", [])]),
        (changelog, 2, [(b"k", b"v2", [])]),
    ]
    assert len(delivered) == 2
    assert dict(table.data) == {b"k": b"v2", b"k2": b"w"}
    assert persisted == [(TP(changelog, 2), 2), (TP(changelog, 2), 3)]  # last offsets

"""Producing to and reading from real topics, always with deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.faust.records import install_tolerant_header_names

# The tests read topics that hold header names which are not UTF-8, as the worker does.
install_tolerant_header_names()


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create a topic (used when a test writes before the worker has created it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    *,
    partition: int | None = None,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> int:
    """Send (key, value) pairs and wait for every acknowledgement; returns the count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 1024 * 1024)
    await producer.start()
    count = 0
    try:
        futures = []
        for key, value in messages:
            futures.append(
                await producer.send(
                    topic, value=value, key=key, partition=partition, headers=list(headers or [])
                )
            )
            count += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord[Any, Any]]], bool],
    deadline_s: float = 60.0,
    isolation_level: str = "read_committed",
) -> list[ConsumerRecord[Any, Any]]:
    """Read a topic from the beginning until `until(records)` holds or the deadline passes.

    Returns what was read either way; the caller asserts on it. By default reads committed
    records only, so aborted transactions (exactly_once after a crash) are not seen.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation_level
    )
    await consumer.start()
    records: list[ConsumerRecord[Any, Any]] = []
    end = time.monotonic() + deadline_s
    try:
        partitions: set[int] | None = None
        while partitions is None and time.monotonic() < end:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()  # topic may not exist yet
                partitions = consumer.partitions_for_topic(topic) or None
                if partitions is None:
                    await asyncio.sleep(0.2)
        if partitions is None:
            return records
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not until(records) and time.monotonic() < end:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def count_messages(bootstrap: str, topic: str, deadline_s: float = 30.0) -> int:
    """How many messages a topic holds now, by reading it up to each partition's last
    stable offset as fetch responses report it. (ListOffsets is not used: the embedded broker
    answers it with the last batch's base offset + 1, which undercounts batched records.)"""
    return await _count_from(bootstrap, topic, None, deadline_s)


async def _count_from(bootstrap: str, topic: str, group: str | None, deadline_s: float) -> int:
    """Committed records of `topic` from the beginning (`group` None) or from the group's
    committed offsets, read up to each partition's last stable offset. Reads as a consumer
    that never joins the group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return 0
        consumer.assign(tps)
        for tp in tps:
            committed = await consumer.committed(tp) if group is not None else None
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        count = 0
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            batch = await consumer.getmany(timeout_ms=200)
            count += sum(len(records) for records in batch.values())
            marks = [consumer.last_stable_offset(tp) for tp in tps]
            positions = [await consumer.position(tp) for tp in tps]
            if all(m is not None and pos >= m for pos, m in zip(positions, marks, strict=True)):
                return count
        msg = f"could not read {topic} to its end within {deadline_s}s"
        raise AssertionError(msg)
    finally:
        await consumer.stop()


async def wait_committed(
    bootstrap: str, group: str, topic: str, wanted: dict[int, int], deadline_s: float = 30.0
) -> dict[int, int | None]:
    """Poll the group's committed offsets of `topic`'s partitions in `wanted` until they
    equal it (partition -> offset) or the deadline passes; returns the last seen (the caller
    asserts). Read as a consumer of the group that never joins it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    seen: dict[int, int | None] = {}
    try:
        end = asyncio.get_running_loop().time() + deadline_s
        while True:
            seen = {p: await consumer.committed(TopicPartition(topic, p)) for p in wanted}
            if seen == wanted or asyncio.get_running_loop().time() > end:
                return seen
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


async def backlog(bootstrap: str, group: str, topic: str, deadline_s: float = 30.0) -> int:
    """How many committed records of `topic` lie after the group's committed offsets (its
    backlog: records it has not yet processed and committed)."""
    return await _count_from(bootstrap, topic, group, deadline_s)

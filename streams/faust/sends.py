"""Sends caused by processing a source partition: through that partition's transaction, and in
record batches.

Changes no Faust method; these replace `topic.send` for the agents:

1. `send_caused_by`: under `exactly_once` Faust routes a send to a transactional producer by
   the *destination* partition, and only for topics the app consumes: outputs to other topics
   leave the transaction, and a destination partition owned by another worker has no producer
   here. This sends through the *source* partition's producer (transactional ids follow
   Faust's `{app id}-{topic group}-{partition}`), so a record commits or aborts with the
   source offsets and the state writes of the same work.
2. `send_batched_caused_by`: a record sent alone costs a future, an accumulator lookup and
   Faust's send wrappers; a flush sends thousands. This appends them to aiokafka record
   batches (`create_batch`/`send_batch`), one per destination partition, on the partition the
   producer's default partitioner picks (`key_partition`), in order, and marks the
   transaction as having sent (`transactions.sent_in`).

Upstream: faust-streaming/faust#177 (open) reports records sent outside the transaction under
exactly_once; no upstream issue found for batch sends (the change that would remove it: a batch
send in Faust's producer). Pinned by tests/unit/test_batched_send.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust

from streams.faust.transactions import sent_in

__all__ = [
    "Outbound",
    "key_partition",
    "send_batched_caused_by",
    "send_caused_by",
    "transactional_id",
]

Outbound = tuple[str, bytes, bytes | None, list[tuple[str, bytes]] | None]
"""A record to send: topic, key, value (None: a tombstone), headers (None: none)."""


def transactional_id(app: faust.App, source_topic: str, source_partition: int) -> str:
    """The transactional id of the producer of work on a source partition (Faust's
    `{app id}-{topic group}-{partition}`)."""
    return f"{app.conf.id}-{app.assignor.group_for_topic(source_topic)}-{source_partition}"


async def send_caused_by(
    app: faust.App,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    *,
    source_topic: str,
    source_partition: int,
    headers: list[tuple[str, bytes]] | None = None,
    partition: int | None = None,
) -> Awaitable[Any]:
    """Send a record caused by processing `source_topic`/`source_partition`; returns the
    delivery future (await it to know the record is in Kafka). Under `exactly_once` it goes
    through that source partition's transactional producer."""
    if app.in_transaction:
        manager: Any = app.consumer.transactions
        delivery: Awaitable[Any] = await manager.producer.send(
            topic,
            key,
            value,
            partition,
            None,
            headers,
            transactional_id=transactional_id(app, source_topic, source_partition),
        )
        return delivery
    delivery = await app.producer.send(topic, key, value, partition, None, headers)
    return delivery


_KEY_PARTITIONS_MAX = 1 << 17
_key_partitions: dict[tuple[str, bytes], int] = {}
"""(topic, key) -> partition, cleared when full. Process-wide: a process serves one app, and a
topic's partition count is fixed while workers run (raising it re-keys every subject)."""


def key_partition(app: faust.App, topic: str, key: bytes) -> int:
    """The partition the producer's default partitioner picks for `key` (murmur2), remembered
    per (topic, key): the pure-Python murmur2 and the partition lists Faust builds per call
    would otherwise run once per input event."""
    cache_key = (topic, key)
    partition = _key_partitions.get(cache_key)
    if partition is None:
        producer: Any = app.producer
        partition = int(producer.key_partition(topic, key).partition)
        if len(_key_partitions) >= _KEY_PARTITIONS_MAX:
            _key_partitions.clear()
        _key_partitions[cache_key] = partition
    return partition


async def send_batched_caused_by(
    app: faust.App,
    records: Iterable[Outbound],
    *,
    source_topic: str,
    source_partition: int,
    partition: int | None = None,
    on_sent: Callable[[Any, int], None] | None = None,
) -> list[Awaitable[Any]]:
    """Send `records` as `send_caused_by` would, one by one, but in record batches: one per
    destination partition (another when one fills up). Returns the batches' delivery futures
    (await them all to know every record is in Kafka; one fails if its batch does).

    `partition`: every record goes there (else the key picks it, as for a lone send); records
    for one partition keep their order. `on_sent` is called with a delivered batch's metadata
    (the offset of its first record) and its number of records. Under `exactly_once` the
    batches go through the source partition's transactional producer, under its lock, and
    that transaction is marked as having sent (so `commit_sent_transactions` commits it).
    Raises RuntimeError when that producer does not exist (the partition is not ours).
    """
    driver: Any = app.producer
    lock: asyncio.Lock | None = None
    transactional: str | None = None
    if app.in_transaction:
        transactional = transactional_id(app, source_topic, source_partition)
        producer = driver._transaction_producers.get(transactional)
        if producer is None:
            msg = f"no transactional producer for {transactional}"
            raise RuntimeError(msg)
        lock = driver._trn_locks[transactional]
    else:
        producer = driver._ensure_producer()
    batches: dict[tuple[str, int], Any] = {}
    deliveries: list[Awaitable[Any]] = []

    async def submit(topic: str, partition: int, batch: Any) -> None:
        batch.close()  # nothing sent one by one joins it: its records are these alone
        if transactional is not None:
            sent_in(driver).add(transactional)  # its transaction now holds records
        async with lock or contextlib.nullcontext():
            delivery = await producer.send_batch(batch, topic, partition=partition)
        if on_sent is not None:
            count = batch.record_count()
            delivery.add_done_callback(
                lambda d: (
                    on_sent(d.result(), count)
                    if not d.cancelled() and d.exception() is None
                    else None
                )
            )
        deliveries.append(delivery)

    for topic, key, value, headers in records:
        destination = (topic, key_partition(app, topic, key) if partition is None else partition)
        batch = batches.get(destination)
        if batch is None:
            batch = batches[destination] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers or []) is None:
            await submit(*destination, batch)  # full: send it, go on in a new one
            batch = batches[destination] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=headers or [])  # fits:
            # an empty batch takes any record (the broker judges its size, as for one sent alone)
    for destination, batch in batches.items():
        await submit(*destination, batch)
    return deliveries

"""Where a partition ends, as recovery asks for it, on a real broker (the embedded one
answers ListOffsets with the base offset of the last record batch + 1)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.faust.highwaters import fetched_ends
from tests.support.broker import Broker
from tests.support.kafka_io import create_topic, read_topic
from tests.support.worker import TopicNames

pytestmark = pytest.mark.integration


async def test_fetched_ends_reach_past_the_last_record_of_a_batch(
    broker: Broker, names: TopicNames
) -> None:
    topic = names.input
    await create_topic(broker.bootstrap_servers, topic, 3)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        await (await producer.send(topic, b"alone", partition=0))
        batch = producer.create_batch()
        for i in range(5):
            assert batch.append(key=None, value=b"batched-%d" % i, timestamp=None) is not None
        await (await producer.send_batch(batch, topic, partition=0))
        await (await producer.send(topic, b"one", partition=1))
    finally:
        await producer.stop()
    records = await read_topic(broker.bootstrap_servers, topic, until=lambda r: len(r) >= 7)
    truth = {p: 1 + max((r.offset for r in records if r.partition == p), default=-1)
             for p in range(3)}  # fmt: skip
    assert truth == {0: 6, 1: 1, 2: 0}

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        ends = await consumer.end_offsets(tps)
        fetched = await fetched_ends(consumer._client, ends, 0)
    finally:
        await consumer.stop()
    assert {tp.partition: end for tp, end in fetched.items()} == truth

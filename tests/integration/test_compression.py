"""Compressed input from real clients: librdkafka (confluent-kafka) and aiokafka batches of
every codec Kafka has are read, every event counted, none a dead letter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer as LibrdkafkaProducer

from tests.support.broker import Broker
from tests.support.kafka_io import count_messages, create_topic
from tests.support.scenario import generate
from tests.support.worker import TopicNames, WorkerProcess, wait_metric_at_least

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_batches_of_every_codec_from_both_clients_are_read(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess], codec: str
) -> None:
    scenario = generate(seed=26, n=300, duplicate_share=0.0)
    half = len(scenario.events) // 2
    by_librdkafka, by_aiokafka = scenario.payloads()[:half], scenario.payloads()[half:]
    await create_topic(broker.bootstrap_servers, names.input, 4)
    worker = start_worker()
    worker.wait_ready()

    producer = LibrdkafkaProducer(
        {"bootstrap.servers": broker.bootstrap_servers, "compression.type": codec, "linger.ms": 20}
    )
    for key, value in by_librdkafka:
        producer.produce(names.input, value=value, key=key)
    assert await asyncio.to_thread(producer.flush, 30.0) == 0
    client = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap_servers, compression_type=codec, linger_ms=20
    )
    await client.start()
    try:
        await asyncio.gather(
            *[await client.send(names.input, value=v, key=k) for k, v in by_aiokafka]
        )
    finally:
        await client.stop()

    await wait_metric_at_least(worker, "insights_events_valid_total", len(scenario.events), 60.0)
    assert f"insights_events_received_total {float(len(scenario.events))}" in worker.metrics()
    assert await count_messages(broker.bootstrap_servers, names.deadletter) == 0
    assert worker.process.poll() is None  # the same worker throughout
    assert worker.stop() == 0

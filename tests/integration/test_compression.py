"""Compressed input from real clients: librdkafka (confluent-kafka) and aiokafka batches of
every codec Kafka has are read, every event counted, none a dead letter. Compressed output:
with INSIGHTS_COMPRESSION_TYPE every batch the worker writes carries the codec, and
librdkafka reads them all, finals exact."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.codec import lz4_encode
from confluent_kafka import OFFSET_BEGINNING, KafkaError
from confluent_kafka import Consumer as LibrdkafkaConsumer
from confluent_kafka import Producer as LibrdkafkaProducer
from confluent_kafka import TopicPartition as LibrdkafkaPartition

from bench.compression import HEADER, read_batches
from streams.runtime.tables import TABLE_NAMES, changelog_topic
from streams.runtime.windows import parse_windows
from tests.support.broker import Broker
from tests.support.finals import assert_exact
from tests.support.kafka_io import count_messages, create_topic, produce
from tests.support.scenario import final_figures, generate, produce_flushers
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


def _librdkafka_read(
    bootstrap: str, topic: str, until: Callable[[list[Any]], bool], deadline_s: float = 120.0
) -> list[Any]:
    """Every record of `topic` from the beginning, read by librdkafka (committed only), until
    `until(records)` or the deadline; a fetch or decompression error fails the test."""
    consumer = LibrdkafkaConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-librdkafka",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    records: list[Any] = []
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([LibrdkafkaPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        end = time.monotonic() + deadline_s
        while not until(records) and time.monotonic() < end:
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, f"{topic}: {error}"
                    continue
                records.append(SimpleNamespace(key=message.key(), value=message.value()))
    finally:
        consumer.close()
    return records


async def _codecs(bootstrap: str, topic: str) -> dict[int, int]:
    """Batches of `topic` by codec id (attributes & 7). A batch that stayed uncompressed
    must be one the codec could not shrink (aiokafka then sends it as is)."""
    found: dict[int, int] = {}
    for raw in await read_batches(bootstrap, topic):
        (attributes,) = struct.unpack_from(">h", raw, 21)
        codec = attributes & 0x07
        if codec == 0:
            section = raw[HEADER:]
            assert len(lz4_encode(section)) >= len(section), f"{topic}: a batch sent as is"
        found[codec] = found.get(codec, 0) + 1
    return found


async def test_the_outputs_in_the_set_codec_read_by_librdkafka_finals_exact(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    lz4 = 3  # codec id in a batch's attributes; not the default setting
    specs = parse_windows("tumbling:60s,hopping:300s/60s")
    scenario = generate(seed=28, n=1500)
    expected = scenario.expected(specs)
    await create_topic(broker.bootstrap_servers, names.input, 4)
    worker = start_worker(
        INSIGHTS_COMPRESSION_TYPE="LZ4", INSIGHTS_IDLE_TIMEOUT="1h", INSIGHTS_GRACE="30s"
    )
    await produce(broker.bootstrap_servers, names.input, scenario.payloads(), partition=0)
    await produce_flushers(broker.bootstrap_servers, names.input, scenario, 4)
    worker.wait_ready()

    def complete(records: list[Any]) -> bool:
        return set(expected) <= set(final_figures(records))

    rolling = await asyncio.to_thread(
        _librdkafka_read, broker.bootstrap_servers, names.rolling, complete
    )
    assert_exact(final_figures(rolling), expected)
    # Every window of these is closed: dead letters (reason `late`), also in lz4.
    await produce(
        broker.bootstrap_servers, names.input, scenario.payloads(scenario.late), partition=0
    )
    dead = await asyncio.to_thread(
        _librdkafka_read,
        broker.bootstrap_servers,
        names.deadletter,
        lambda r: len(r) >= len(scenario.late),
    )
    assert sorted(json.loads(r.value)["event_id"] for r in dead) == sorted(
        e.event_id for e in scenario.late
    )
    assert worker.stop() == 0  # its last changelog writes are out

    changelogs = [changelog_topic(names.app_id, table) for table in TABLE_NAMES]
    for topic in (names.rolling, names.deadletter, names.keyed, names.observers, *changelogs):
        codecs = await _codecs(broker.bootstrap_servers, topic)
        assert set(codecs) <= {0, lz4} and codecs.get(lz4, 0) > 0, (topic, codecs)
        count = await count_messages(broker.bootstrap_servers, topic)
        records = await asyncio.to_thread(
            _librdkafka_read, broker.bootstrap_servers, topic, lambda r, n=count: len(r) >= n
        )
        assert len(records) == count > 0, topic  # librdkafka decoded every one
        if topic in (names.rolling, names.deadletter, names.observers):
            assert all(isinstance(json.loads(r.value), dict) for r in records), topic

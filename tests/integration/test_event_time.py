"""Event time across input partitions on a real broker: keyed partitions close windows on
the minimum over the input partitions' watermarks, so finals are exact however the input is
keyed (by subject, CRC32 by librdkafka, not at all), with groups, with one and with three
workers, with an input partition far behind the others, and with a far-future event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer as LibrdkafkaProducer

from models import DeadLetter, loads_model
from streams.runtime.windows import parse_windows
from tests.support.broker import Broker
from tests.support.finals import assert_exact, wait_for_finals
from tests.support.kafka_io import create_topic, produce, read_topic
from tests.support.scenario import Scenario, encode, generate
from tests.support.truth import Event
from tests.support.worker import TopicNames, WorkerProcess, wait_metric_at_least

pytestmark = pytest.mark.integration

WINDOWS = "tumbling:10s,hopping:20s/10s"
SPECS = parse_windows(WINDOWS)
# The contract's rules with a short grace; idle partitions close by wall clock after 3 s
# (these events are stamped days ago, so that closes every window once all is read).
BURST_ENV = {
    "INSIGHTS_WINDOWS": WINDOWS,
    "INSIGHTS_GRACE": "2s",
    "INSIGHTS_IDLE_TIMEOUT": "3s",
    "INSIGHTS_TOPIC_PARTITIONS": "4",
}


async def produce_keyed_as(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes]], keying: str
) -> None:
    """Send as a user's producer would: aiokafka keyed by subject (murmur2), aiokafka with
    no key (a random partition per message), or librdkafka keyed by subject (its default
    partitioner: CRC32)."""
    if keying == "crc32":
        producer = LibrdkafkaProducer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        for key, value in messages:
            producer.produce(topic, value=value, key=key, on_delivery=delivered)
            producer.poll(0)
        assert await asyncio.to_thread(producer.flush, 30.0) == 0
        assert not failures, failures[:3]
        return
    client = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await client.start()
    try:
        sent = [
            await client.send(topic, value=value, key=key if keying == "subject" else None)
            for key, value in messages
        ]
        await asyncio.gather(*sent)
    finally:
        await client.stop()


async def dead_letters(broker: Broker, names: TopicNames, at_least: int) -> list[DeadLetter]:
    records = await read_topic(
        broker.bootstrap_servers,
        names.deadletter,
        until=lambda r: len(r) >= at_least,
        deadline_s=30.0 if at_least else 3.0,
    )
    return [loads_model(DeadLetter, r.value) for r in records]


def start_ready(
    start_worker: Callable[..., WorkerProcess], count: int, **env: str
) -> list[WorkerProcess]:
    workers = [start_worker(**env) for _ in range(count)]
    for worker in workers:
        worker.wait_ready()
    return workers


@pytest.mark.parametrize(
    ("keying", "workers"),
    [("subject", 1), ("subject", 3), ("none", 1), ("none", 3), ("crc32", 1)],
)
async def test_a_burst_gives_exact_subject_and_group_finals_and_no_false_late(
    broker: Broker,
    names: TopicNames,
    start_worker: Callable[..., WorkerProcess],
    keying: str,
    workers: int,
) -> None:
    """1,600 events of 8 subjects in 2 groups, out of order within the 2 s grace, all sent
    at once: every final exact; the only `late` dead letters are the late events sent
    after every window closed."""
    scenario = generate(seed=22, n=1600, jitter_ms=2_000, duplicate_share=0.0)
    expected = scenario.expected(SPECS)
    assert sum(1 for key in expected if key[0] == "group") > 100
    await create_topic(broker.bootstrap_servers, names.input, 4)
    fleet = start_ready(start_worker, workers, **BURST_ENV)

    await produce_keyed_as(broker.bootstrap_servers, names.input, scenario.payloads(), keying)
    finals = await wait_for_finals(broker, names, expected, deadline_s=120.0)
    assert_exact(finals, expected)
    assert await dead_letters(broker, names, 0) == []

    await produce(broker.bootstrap_servers, names.input, scenario.payloads(scenario.late))
    letters = await dead_letters(broker, names, len(scenario.late))
    assert sorted(d.event_id or "" for d in letters) == sorted(e.event_id for e in scenario.late)
    assert {d.reason.value for d in letters} == {"late"}
    for worker in fleet:
        assert worker.stop() == 0


async def test_an_input_partition_far_behind_holds_windows_until_it_catches_up(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Two hours of history on 12 partitions; partition 0 holds only its first hour until
    the worker has read everything else (an hour of event time ahead), then the rest comes:
    nothing is late and every final is exact."""
    scenario = generate(seed=23, n=18_000, jitter_ms=2_000, duplicate_share=0.0)
    scenario = Scenario(scenario.events, [])
    windows = "tumbling:60s,hopping:300s/60s"
    expected = scenario.expected(parse_windows(windows))
    partitions = 12
    await create_topic(broker.bootstrap_servers, names.input, partitions)
    by_partition = [
        [e for i, e in enumerate(scenario.events) if i % partitions == p] for p in range(partitions)
    ]
    held = by_partition[0][len(by_partition[0]) // 2 :]
    first = [
        e
        for p, events in enumerate(by_partition)
        for e in (events if p else by_partition[0][: len(by_partition[0]) // 2])
    ]
    assert min(e.observed_ms for e in held) < max(e.observed_ms for e in first) - 3_000_000
    assert max(e.observed_ms for e in first) - min(e.observed_ms for e in first) > 6_000_000
    for p, events in enumerate(by_partition):
        head = events if p else by_partition[0][: len(by_partition[0]) // 2]
        await produce(broker.bootstrap_servers, names.input, scenario.payloads(head), partition=p)
    env = {
        **BURST_ENV,
        "INSIGHTS_WINDOWS": windows,
        "INSIGHTS_EMIT": "final",
        "INSIGHTS_TOPIC_PARTITIONS": str(partitions),
        "INSIGHTS_IDLE_TIMEOUT": "60s",  # longer than the pause: partition 0 is not idle
    }
    [worker] = start_ready(start_worker, 1, **env)
    await wait_metric_at_least(worker, "insights_events_received_total", len(first), 120.0)

    await produce(broker.bootstrap_servers, names.input, scenario.payloads(held), partition=0)
    for partition, event in scenario.source_flushers(partitions):
        await produce(broker.bootstrap_servers, names.input, [(None, event)], partition=partition)
    finals = await wait_for_finals(broker, names, expected, deadline_s=180.0)
    assert_exact(finals, expected)
    assert await dead_letters(broker, names, 0) == []
    assert worker.stop() == 0


async def test_a_far_future_event_is_invalid_and_moves_no_watermark(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    scenario = generate(seed=24, n=400, jitter_ms=2_000, duplicate_share=0.0)
    expected = scenario.expected(SPECS)
    await create_topic(broker.bootstrap_servers, names.input, 4)
    [worker] = start_ready(start_worker, 1, **BURST_ENV)
    future = datetime.now(UTC) + timedelta(days=1)
    ahead = Event("from-2099", "o1", "s-0", "temp", 1.0, int(future.timestamp() * 1000), "g-0")
    await produce(broker.bootstrap_servers, names.input, [(b"s-0", encode(ahead))])

    await produce(broker.bootstrap_servers, names.input, scenario.payloads())
    finals = await wait_for_finals(broker, names, expected, deadline_s=120.0)
    assert_exact(finals, expected)
    [letter] = await dead_letters(broker, names, 1)
    assert (letter.reason.value, letter.event_id) == ("invalid", "from-2099")
    assert [e.field for e in letter.errors] == ["observed_at"]
    assert "INSIGHTS_MAX_FUTURE (600s)" in letter.errors[0].message
    assert json.loads(letter.value or "")["event_id"] == "from-2099"
    assert worker.stop() == 0

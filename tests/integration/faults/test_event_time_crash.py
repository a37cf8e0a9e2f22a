"""`kill -9` of one of three workers while they read a backfill and while live traffic
flows, with an idle timeout (2 s) shorter than the rebalance (session timeout 6 s) and a
2 s grace: windows wait for the partitions the victim held, so at-least-once is never short
and exactly-once is exact (Apache Kafka)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest

from streams.runtime.windows import parse_windows
from tests.integration.faults.conftest import (
    PARTITIONS,
    Fleet,
    assert_exact_explained,
    assert_nothing_lost,
    kill,
    metric,
    poll,
    spread_subjects,
    wait_all_ready,
    wait_group,
)
from tests.support.broker import Broker
from tests.support.finals import wait_for_finals
from tests.support.kafka_io import create_topic, produce
from tests.support.scenario import BASE_MS, Scenario
from tests.support.truth import Event
from tests.support.worker import TopicNames, WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOWS = "tumbling:10s,hopping:20s/10s"
SPECS = parse_windows(WINDOWS)
ENV = {
    "INSIGHTS_WINDOWS": WINDOWS,
    "INSIGHTS_GRACE": "2s",
    "INSIGHTS_IDLE_TIMEOUT": "2s",
}


def event(rng: random.Random, i: int, subjects: list[str], observed_ms: int) -> Event:
    subject = rng.choice(subjects)
    group = None if subjects.index(subject) % 3 == 2 else f"g-{subjects.index(subject) % 2}"
    return Event(
        f"evt-{i}",
        rng.choice(["o1", "o2", "o3"]),
        subject,
        rng.choice(["temp", "humidity"]),
        round(rng.gauss(50, 12), 4),
        observed_ms,
        group,
    )


def backfill(seed: int, n: int) -> Scenario:
    """`n` events of 24 subjects (2 per partition, 2 groups), ~0.2 s apart in event time,
    each at most 1.5 s older than the newest before it (inside the grace)."""
    rng = random.Random(seed)
    subjects = spread_subjects(per_partition=2)
    clock = BASE_MS
    events = []
    for i in range(n):
        clock += rng.randint(0, 400)
        events.append(event(rng, i, subjects, clock - rng.randint(0, 1_500)))
    return Scenario(events, [])


async def three_workers(fleet: Fleet) -> list[WorkerProcess]:
    workers = [fleet.start() for _ in range(3)]
    wait_all_ready(workers)
    await wait_group(workers)
    return workers


async def judge(broker: Broker, names: TopicNames, scenario: Scenario, guarantee: str) -> None:
    """Every window's final: exact under exactly_once, never short under at_least_once."""
    expected = scenario.expected(SPECS)
    finals = await wait_for_finals(broker, names, expected, deadline_s=240.0)
    if guarantee == "exactly_once":
        await assert_exact_explained(broker, names, scenario, finals, expected)
    else:
        assert_nothing_lost(finals, expected)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_kill_9_during_a_backfill_waits_for_the_victims_partitions(
    kafka: Broker, names: TopicNames, fleet_factory: Callable[..., Fleet], guarantee: str
) -> None:
    bootstrap = kafka.bootstrap_servers
    scenario = backfill(seed=31, n=4000)
    await create_topic(bootstrap, names.input, PARTITIONS)
    await produce(bootstrap, names.input, scenario.payloads())  # keyed by subject
    fleet = fleet_factory(kafka, **ENV, INSIGHTS_PROCESSING_GUARANTEE=guarantee)
    victim, *survivors = [fleet.start() for _ in range(3)]
    await poll(lambda: metric(victim, "insights_events_received_total") > 0, 120.0, "victim busy")
    kill(victim)

    await judge(kafka, names, scenario, guarantee)
    for worker in survivors:
        assert worker.stop() == 0


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_kill_9_during_live_traffic_waits_for_the_victims_partitions(
    kafka: Broker, names: TopicNames, fleet_factory: Callable[..., Fleet], guarantee: str
) -> None:
    bootstrap = kafka.bootstrap_servers
    await create_topic(bootstrap, names.input, PARTITIONS)
    fleet = fleet_factory(kafka, **ENV, INSIGHTS_PROCESSING_GUARANTEE=guarantee)
    victim, *survivors = await three_workers(fleet)

    rng = random.Random(32)
    subjects = spread_subjects(per_partition=2)
    events: list[Event] = []
    started = time.monotonic()
    killed = False
    while time.monotonic() - started < 24.0:  # ~100 events/s of live traffic
        now_ms = int(time.time() * 1000)
        chunk = [
            event(rng, len(events) + i, subjects, now_ms - rng.randint(0, 1_500)) for i in range(20)
        ]
        events.extend(chunk)
        await produce(bootstrap, names.input, Scenario(chunk, []).payloads())
        if not killed and time.monotonic() - started > 8.0:
            kill(victim)
            killed = True
        await asyncio.sleep(0.2)
    scenario = Scenario(events, [])

    await judge(kafka, names, scenario, guarantee)
    for worker in survivors:
        assert worker.stop() == 0

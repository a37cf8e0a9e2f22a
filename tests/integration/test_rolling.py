"""The rolling engine on a real broker, against ground truth computed in the test from the
same generated events: exact finals, late events, duplicates, restarts, idle close."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from models import DeadLetter, loads_model
from streams.runtime.windows import parse_windows
from tests.support.broker import Broker
from tests.support.finals import assert_exact, wait_for_finals
from tests.support.kafka_io import count_messages, create_topic, produce, read_topic
from tests.support.scenario import Scenario, final_figures, generate, produce_flushers
from tests.support.worker import TopicNames, WorkerProcess, wait_metric_at_least

pytestmark = pytest.mark.integration

SPECS = parse_windows("tumbling:60s,hopping:300s/60s")
# Idle close is by wall clock; these events are stamped hours ago, so keep it out of the way.
ENGINE_ENV = {"INSIGHTS_IDLE_TIMEOUT": "1h", "INSIGHTS_GRACE": "30s"}


async def test_finals_equal_ground_truth_and_late_events_are_dead_letters(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    scenario = generate(seed=1, n=3000)
    expected = scenario.expected(SPECS)
    await create_topic(broker.bootstrap_servers, names.input, 4)
    worker = start_worker(**ENGINE_ENV)
    await produce(broker.bootstrap_servers, names.input, scenario.payloads(), partition=0)
    await produce_flushers(broker.bootstrap_servers, names.input, scenario, 4)
    worker.wait_ready()

    finals = await wait_for_finals(broker, names, expected)
    assert_exact(finals, expected)
    assert len(expected) > 500  # several subjects, metrics, groups and windows

    # Every window of these is closed now: each is a dead letter, counted nowhere.
    await produce(
        broker.bootstrap_servers, names.input, scenario.payloads(scenario.late), partition=0
    )
    dead = await read_topic(
        broker.bootstrap_servers, names.deadletter, until=lambda r: len(r) >= len(scenario.late)
    )
    letters = [loads_model(DeadLetter, r.value) for r in dead]
    assert sorted(d.event_id or "" for d in letters) == sorted(e.event_id for e in scenario.late)
    assert {d.reason.value for d in letters} == {"late"}
    assert {d.topic for d in letters} == {names.input}
    for letter in letters:
        assert json.loads(letter.value or "")["event_id"] == letter.event_id
    # A final would have to be re-sent to count them; none is, and nothing else arrived.
    records = await read_topic(
        broker.bootstrap_servers,
        names.rolling,
        until=lambda r: False,
        deadline_s=3.0,
    )
    assert_exact(final_figures(records), expected)
    assert await count_messages(broker.bootstrap_servers, names.deadletter) == len(scenario.late)
    metrics = worker.metrics()
    resends = len(scenario.events) - len({e.event_id for e in scenario.events})
    # Each resent event is a duplicate in its subject scope, and again in its group scope.
    duplicates = resends + sum(
        1 for i, e in enumerate(scenario.events) if e.group_id and e in scenario.events[:i]
    )
    assert resends > 50
    assert f"insights_late_events_total {float(len(scenario.late))}" in metrics
    assert f"insights_duplicates_total {float(duplicates)}" in metrics
    assert worker.stop() == 0


async def test_the_minimal_set_counts_every_copy_and_keeps_only_the_basic_figures(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Basic aggregates, no dedup, no anomaly detection: each final has exact count, sum,
    mean, min and max over every copy sent, null for the rest; no anomalies, no consensus."""
    specs = parse_windows("tumbling:60s")
    # Copies right behind their original, as a producer's retry sends them (a copy sent
    # much later could be late, and which is depends on the keyed partitions' watermarks).
    rng = random.Random(11)
    scenario = generate(seed=11, n=1500, duplicate_share=0.0)
    scenario = Scenario(
        [copy for e in scenario.events for copy in ([e, e] if rng.random() < 0.05 else [e])],
        scenario.late,
    )
    expected = scenario.expected(specs, dedup=False, basic=True)
    await create_topic(broker.bootstrap_servers, names.input, 4)
    worker = start_worker(
        **ENGINE_ENV,
        INSIGHTS_WINDOWS="tumbling:60s",
        INSIGHTS_AGGREGATES="basic",
        INSIGHTS_DEDUP_TTL="0s",
        INSIGHTS_ANOMALY_DETECTION="false",
    )
    await produce(broker.bootstrap_servers, names.input, scenario.payloads(), partition=0)
    await produce_flushers(broker.bootstrap_servers, names.input, scenario, 4)
    worker.wait_ready()

    finals = await wait_for_finals(broker, names, expected)
    assert_exact(finals, expected)
    resends = len(scenario.events) - len({e.event_id for e in scenario.events})
    assert resends > 30  # copies counted: differs from the deduplicated figures
    assert expected != scenario.expected(specs, basic=True)
    assert any(figures["min"] in (-1e6, 1e6) for figures in expected.values())  # spikes
    for topic in (names.anomalies, names.observers):
        assert await count_messages(broker.bootstrap_servers, topic) == 0, topic
    assert "insights_duplicates_total 0.0" in worker.metrics()
    assert worker.stop() == 0


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_restart_midstream_keeps_finals_exact_and_duplicates_counted_once(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess], store: str
) -> None:
    """The replacement has a data dir of its own: it recovers from the changelog."""
    env = {**ENGINE_ENV, "INSIGHTS_STORE": store}
    scenario = generate(seed=2, n=2000)
    expected = scenario.expected(SPECS)
    half = len(scenario.events) // 2
    first, second = scenario.events[:half], scenario.events[half:]
    await create_topic(broker.bootstrap_servers, names.input, 4)

    worker = start_worker(**env)
    worker.wait_ready()
    await produce(broker.bootstrap_servers, names.input, scenario.payloads(first), partition=0)
    assert worker.stop(signal.SIGTERM) == 0

    replacement = start_worker(**env)
    # Duplicates across the restart: the last 50 of the first half are sent again.
    resent = first[-50:]
    await produce(
        broker.bootstrap_servers, names.input, scenario.payloads(resent + second), partition=0
    )
    await produce_flushers(broker.bootstrap_servers, names.input, scenario, 4)
    replacement.wait_ready()
    assert_exact(await wait_for_finals(broker, names, expected), expected)
    assert replacement.stop() == 0


async def kill_9_halfway(
    broker: Broker,
    names: TopicNames,
    start_worker: Callable[..., WorkerProcess],
    env: dict[str, str],
    seed: int,
) -> tuple[dict[Any, list[dict[str, Any]]], dict[Any, Any]]:
    """Half the events, `kill -9` mid-stream, a replacement takes the rest; its finals."""
    scenario = generate(seed=seed, n=2000)
    expected = scenario.expected(SPECS)
    half = len(scenario.events) // 2
    first, second = scenario.events[:half], scenario.events[half:]
    await create_topic(broker.bootstrap_servers, names.input, 4)
    worker = start_worker(**env)
    worker.wait_ready()
    await produce(broker.bootstrap_servers, names.input, scenario.payloads(first), partition=0)
    await wait_metric_at_least(worker, "insights_events_received_total", half // 2)
    worker.stop(signal.SIGKILL)

    replacement = start_worker(**env)
    await produce(broker.bootstrap_servers, names.input, scenario.payloads(second), partition=0)
    await produce_flushers(broker.bootstrap_servers, names.input, scenario, 4)
    replacement.wait_ready()
    finals = await wait_for_finals(broker, names, expected)
    assert replacement.stop() == 0
    return finals, expected


async def test_kill_9_under_exactly_once_keeps_finals_exact(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    if not broker.transactions:
        pytest.skip(
            "exactly_once needs transactional producers: the embedded broker (Tansu) answers "
            "InitProducerId with UnknownError; CI runs this test on Apache Kafka"
        )
    env = {**ENGINE_ENV, "INSIGHTS_PROCESSING_GUARANTEE": "exactly_once"}
    finals, expected = await kill_9_halfway(broker, names, start_worker, env, seed=3)
    assert_exact(finals, expected)


@pytest.mark.parametrize("persist_interval", [None, "3s"])
async def test_kill_9_under_at_least_once_loses_nothing(
    broker: Broker,
    names: TopicNames,
    start_worker: Callable[..., WorkerProcess],
    persist_interval: str | None,
) -> None:
    """Also with the changelog written only every 3 s: what was emitted but not persisted
    is replayed from the last committed offset, never lost."""
    env = dict(ENGINE_ENV)
    if persist_interval is not None:
        env["INSIGHTS_PERSIST_INTERVAL"] = persist_interval
    finals, expected = await kill_9_halfway(broker, names, start_worker, env, seed=4)
    assert set(finals) == set(expected)
    for key, records in finals.items():
        for record in records:
            assert record["count"] >= expected[key]["count"], key


async def test_a_silent_partition_closes_its_windows_by_wall_clock(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    scenario = generate(seed=5, n=200)
    expected = scenario.expected(SPECS)
    worker = start_worker(INSIGHTS_IDLE_TIMEOUT="3s")
    worker.wait_ready()
    await produce(broker.bootstrap_servers, names.input, scenario.payloads(), partition=0)
    sent_at = time.monotonic()
    finals = await wait_for_finals(broker, names, expected, deadline_s=30.0)
    took = time.monotonic() - sent_at
    assert_exact(finals, expected)
    assert took <= 3 + 5, f"finals took {took:.1f}s after the partition went silent"
    assert worker.stop() == 0

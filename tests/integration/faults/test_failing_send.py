"""A send that fails stops the worker and commits nothing past it: the dead-letter topic is
created beforehand with `max.message.bytes` 2048 (as an operator might), and ~3 KB invalid
messages come among ordinary traffic. The worker exits non-zero naming the topic and the
error; once the topic is fixed, a restart delivers every dead letter and counts every event
exactly once (Apache Kafka)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from models import DeadLetter, loads_model
from tests.integration.faults.conftest import (
    PARTITIONS,
    SPECS,
    Fleet,
    drain_then_flush,
    read_all,
    spread_scenario,
)
from tests.support.broker import Broker
from tests.support.finals import assert_exact, wait_for_finals
from tests.support.kafka_io import create_topic, produce
from tests.support.worker import TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD = 20


async def _dead_letter_topic(bootstrap: str, name: str, max_bytes: int, *, create: bool) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_bytes)}
        if create:
            await admin.create_topics([NewTopic(name, PARTITIONS, 1, topic_configs=config)])
        else:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, config)])
    finally:
        await admin.close()


async def test_a_refused_dead_letter_stops_the_worker_and_a_restart_loses_nothing(
    kafka: Broker, names: TopicNames, fleet_factory: Callable[..., Fleet]
) -> None:
    bootstrap = kafka.bootstrap_servers
    scenario = spread_scenario(seed=41, n=1200, duplicate_share=0.0)
    expected = scenario.expected(SPECS)
    await create_topic(bootstrap, names.input, PARTITIONS)
    await _dead_letter_topic(bootstrap, names.deadletter, 2048, create=True)
    fleet = fleet_factory(kafka)
    worker = fleet.start()
    worker.wait_ready()

    bad = [
        (b"s-bad", json.dumps({"event_id": f"bad-{i}", "value": "x" * 3000}).encode())
        for i in range(BAD)
    ]
    good = scenario.payloads()
    await produce(bootstrap, names.input, good[:600])
    await produce(bootstrap, names.input, bad)
    await produce(bootstrap, names.input, good[600:])

    try:
        returncode = await asyncio.to_thread(worker.process.wait, 120)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker went on after a failed send")
    assert returncode != 0
    log = worker.log_path.read_text(encoding="utf-8", errors="replace")
    assert "dead_letter_not_delivered" in log and "worker_failed_exiting" in log
    assert names.deadletter in log and "MessageSizeTooLarge" in log

    await _dead_letter_topic(bootstrap, names.deadletter, 1 << 20, create=False)
    replacement = fleet.start()
    replacement.wait_ready()
    await drain_then_flush(kafka, names, scenario)
    finals = await wait_for_finals(kafka, names, expected)
    assert_exact(finals, expected)
    letters = [
        loads_model(DeadLetter, r.value) for r in await read_all(bootstrap, names.deadletter)
    ]
    assert sorted({d.event_id or "" for d in letters}) == sorted(f"bad-{i}" for i in range(BAD))
    assert {d.reason.value for d in letters} == {"invalid"}
    assert replacement.stop() == 0

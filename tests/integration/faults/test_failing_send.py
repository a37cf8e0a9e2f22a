"""A send that fails stops the worker and commits nothing past it: mid-run, the dead-letter
topic's `max.message.bytes` is lowered to 2048 (as an operator might), and ~4 KB invalid
messages of random text (too big for 2048 even compressed) come among ordinary traffic.
`/readyz` answers 503 naming the failure within a second of it, the worker exits non-zero
within INSIGHTS_SHUTDOWN_TIMEOUT, naming the topic and the error; once the topic is fixed, a
restart delivers every dead letter and counts every event exactly once (Apache Kafka)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import subprocess
import time
from collections.abc import Callable
from datetime import datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from models import DeadLetter, loads_model
from tests.integration.faults.conftest import (
    PARTITIONS,
    SPECS,
    Fleet,
    drain_then_flush,
    metric,
    poll,
    read_all,
    spread_scenario,
)
from tests.support.broker import Broker
from tests.support.finals import assert_exact, wait_for_finals
from tests.support.kafka_io import create_topic, produce
from tests.support.worker import TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD = 20
SHUTDOWN_S = 10


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
    await _dead_letter_topic(bootstrap, names.deadletter, 1 << 20, create=True)
    fleet = fleet_factory(kafka, INSIGHTS_SHUTDOWN_TIMEOUT=str(SHUTDOWN_S))
    worker = fleet.start()
    worker.wait_ready()

    # Random text: a letter stays over 2048 bytes after the producer's zstd compresses it.
    bad = [
        (b"s-bad", json.dumps({"event_id": f"bad-{i}", "value": _noise(i)}).encode())
        for i in range(BAD)
    ]
    good = scenario.payloads()
    await produce(bootstrap, names.input, good[:600])
    await poll(lambda: metric(worker, "insights_events_valid_total") >= 600, 60.0, "600 counted")
    await _dead_letter_topic(bootstrap, names.deadletter, 2048, create=False)  # mid-run

    # /readyz, polled every 20 ms from before the failure until the process is gone.
    answers: list[tuple[float, int, bytes]] = []

    async def watch_readiness() -> None:
        while worker.process.poll() is None:
            status, body = await asyncio.to_thread(worker.http, "/readyz")
            answers.append((time.time(), status, body))
            await asyncio.sleep(0.02)  # the polling period, not a wait for a condition

    watcher = asyncio.create_task(watch_readiness())
    await produce(bootstrap, names.input, bad)
    await produce(bootstrap, names.input, good[600:])
    try:
        returncode = await asyncio.to_thread(worker.process.wait, 120)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker went on after a failed send")
    exited_at = time.time()
    await watcher
    assert returncode != 0
    log = worker.log_path.read_text(encoding="utf-8", errors="replace")
    assert "dead_letter_not_delivered" in log and "worker_failed_exiting" in log
    assert names.deadletter in log and "MessageSizeTooLarge" in log
    failed_at = _first_time(log, "dead_letter_not_delivered")
    refusals = [(t, body) for t, status, body in answers if status == 503]
    assert refusals, f"no 503 seen before the exit: {answers[-3:]}"
    first_503, body = refusals[0]
    assert b"failed" in body and b"MessageSizeTooLarge" in body, body
    assert all(status == 200 for t, status, _ in answers if t < failed_at - 0.05)
    print(  # noqa: T201
        f"failure -> /readyz 503: {first_503 - failed_at:.3f} s; "
        f"failure -> exit {returncode}: {exited_at - failed_at:.2f} s"
    )
    assert first_503 - failed_at <= 1.0
    assert exited_at - failed_at <= SHUTDOWN_S + 1.0

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


def _noise(seed: int) -> str:
    """4,000 characters of seeded random base64 (~3 KB after compression)."""
    return base64.b64encode(random.Random(seed).randbytes(3000)).decode()


def _first_time(log: str, event: str) -> float:
    """The wall time (epoch s) of the first log line of `event`."""
    for line in log.splitlines():
        if f'"{event}"' in line:
            stamp = json.loads(line)["timestamp"]
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    raise AssertionError(f"no {event} in the log")

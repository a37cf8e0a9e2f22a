"""Broker outage: Apache Kafka (storage on disk) stops for 15 s mid-stream and starts again.
The worker reconnects by itself, `/readyz` says 503 while the broker is gone and 200 after,
and no accepted event is lost."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.faults.conftest import (
    SPECS,
    Fleet,
    assert_nothing_lost,
    drain_then_flush,
    poll,
    produce_paced,
    spread_scenario,
    tail_topic,
    write_result,
)
from tests.support.finals import wait_for_finals
from tests.support.kafka_io import create_topic, produce
from tests.support.kafka_server import KafkaServer
from tests.support.scenario import encode
from tests.support.truth import Event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 15.0


@pytest.fixture(scope="module")
def stoppable_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """A Kafka of this module's own: the test stops and starts it."""
    server = KafkaServer(tmp_path_factory.mktemp("kafka-outage") / "run")
    server.start()
    try:
        yield server
    finally:
        server.destroy()


async def test_worker_rides_out_a_15s_broker_outage(
    stoppable_kafka: KafkaServer, fleet_factory: Callable[..., Fleet], tmp_path: Path
) -> None:
    broker = stoppable_kafka.broker()
    bootstrap = broker.bootstrap_servers
    scenario = spread_scenario(seed=31, n=1500)
    expected = scenario.expected(SPECS)
    payloads = scenario.payloads()
    before, after = payloads[: len(payloads) // 2], payloads[len(payloads) // 2 :]

    fleet = fleet_factory(broker)
    names = fleet.names
    await create_topic(bootstrap, names.input, 12)
    worker = fleet.start()
    worker.wait_ready()
    await produce_paced(bootstrap, names.input, before, chunk=100, period_s=0.05)

    # Stop the broker while the worker is still working through what was sent.
    readiness: list[tuple[float, int]] = []
    watching = True

    async def watch() -> None:
        while watching:
            asked_at = time.monotonic()  # the answer describes the worker from this moment on
            status, _ = await asyncio.to_thread(worker.http, "/readyz")
            readiness.append((asked_at, status))
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch())
    stop_began = time.monotonic()
    await asyncio.to_thread(stoppable_kafka.stop)
    stopped_at = time.monotonic()
    await asyncio.sleep(OUTAGE_S)  # the outage itself
    restart_at = time.monotonic()
    await asyncio.to_thread(stoppable_kafka.start)
    back_at = time.monotonic()
    assert stoppable_kafka.bootstrap_servers == bootstrap  # same ports, same storage

    # The worker must notice by itself and come back by itself.
    assert worker.process.poll() is None, worker.log_tail()
    ready_after = await poll(lambda: worker.http("/readyz")[0] == 200, 120.0, "ready again")
    watching = False
    await watcher
    during = [(round(at - stopped_at, 2), status) for at, status in readiness]
    # Until the restart begins: the worker may reconnect before `start` has returned (it
    # also waits for the broker's own readiness probe).
    during = [(at, status) for at, status in during if 3 <= at <= restart_at - stopped_at]
    assert during, "readiness was not sampled during the outage"
    ready_samples = [at for at, status in during if status != 503]
    assert not ready_samples, f"/readyz not 503 at these seconds after the stop: {ready_samples}"

    # Output flows again: a fresh event's change record appears.
    async with tail_topic(bootstrap, names.rolling) as tail:
        probe = Event("probe-after-outage", "o1", "s-probe", "probe", 1.0, 1_795_773_600_000)
        sent_at = time.monotonic()
        await produce(bootstrap, names.input, [(b"s-probe", encode(probe))])

        def probe_seen() -> bool:
            return any(json.loads(r.value)["metric"] == "probe" for _, r in tail.records)

        output_after = await poll(probe_seen, 120.0, "output after the outage")
    first_output = sent_at + output_after - back_at

    await produce_paced(bootstrap, names.input, after, chunk=100, period_s=0.05)
    await drain_then_flush(broker, names, scenario)
    finals = await wait_for_finals(broker, names, expected)
    finals = {k: v for k, v in finals.items() if k[2] != "probe"}
    exact = assert_nothing_lost(finals, expected)
    figures = {
        "broker_stop_s": round(stopped_at - stop_began, 1),
        "outage_s": round(back_at - stopped_at, 1),
        "ready_after_broker_back_s": round(ready_after, 1),
        "first_output_after_broker_back_s": round(first_output, 1),
        "finals_exact": exact,
    }
    print(f"\nbroker outage: {figures}")  # noqa: T201
    write_result("broker_outage", figures)
    assert worker.stop() == 0

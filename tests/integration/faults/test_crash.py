"""Crash: `kill -9` one of three exactly-once workers mid-stream. The survivors take its
partitions, recover its state from the changelog, and every final stays exact. Takeover
time (kill -> survivors ready again and the victim's partitions publishing again) is
measured with and without a standby replica."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.faults.conftest import (
    PARTITIONS,
    SPECS,
    Fleet,
    assert_exact_explained,
    assignment_view,
    drain_then_flush,
    kill,
    metric,
    partition_of,
    poll,
    produce_paced,
    spread_scenario,
    tail_topic,
    wait_all_ready,
    wait_group,
    write_result,
)
from tests.support.broker import Broker
from tests.support.finals import wait_for_finals
from tests.support.kafka_io import create_topic, produce
from tests.support.worker import TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TAKEOVER: dict[str, dict[str, Any]] = {}


@pytest.mark.parametrize("standby", ["0", "1"])
async def test_kill_9_one_of_three_keeps_finals_exact(
    kafka: Broker, names: TopicNames, fleet_factory: Callable[..., Fleet], standby: str
) -> None:
    bootstrap = kafka.bootstrap_servers
    scenario = spread_scenario(seed=21, n=2400)
    expected = scenario.expected(SPECS)
    payloads = scenario.payloads()
    head, tail_payloads = payloads[: len(payloads) * 2 // 5], payloads[len(payloads) * 2 // 5 :]

    await create_topic(bootstrap, names.input, PARTITIONS)
    fleet = fleet_factory(
        kafka,
        INSIGHTS_PROCESSING_GUARANTEE="exactly_once",
        INSIGHTS_STANDBY_REPLICAS=standby,
    )
    # The victim joins last: partitions move from the two survivors to it, and after the
    # kill back to them (with a standby: to the worker that had them before). That path
    # once reused a fenced transactional producer and crashed a survivor.
    survivors = [fleet.start(), fleet.start()]
    wait_all_ready(survivors)
    await wait_group(survivors)
    victim = fleet.start()
    workers = [survivors[0], victim, survivors[1]]
    wait_all_ready(workers)
    members = await wait_group(workers)
    owned = next(m for m in members if m.web_port == victim.web_port).actives[names.keyed]

    async with tail_topic(bootstrap, names.rolling) as tail:
        await produce_paced(bootstrap, names.input, head)
        await poll(
            lambda: metric(victim, "insights_events_received_total") > 0, 60.0, "victim busy"
        )
        killed_at = time.monotonic()
        killed_wall = datetime.now(UTC)
        kill(victim)

        # Keep a trickle flowing until the victim's partitions publish again.
        resumed: dict[str, float] = {}
        trickle = list(tail_payloads)

        def victim_output_resumed() -> bool:
            for arrived, record in tail.records:
                value = json.loads(record.value)
                emitted = datetime.fromisoformat(value["emitted_at"].replace("Z", "+00:00"))
                if emitted > killed_wall and partition_of(record.key) in owned:
                    resumed.setdefault("output", arrived - killed_at)
                    return True
            return False

        async def survivors_ready() -> bool:
            if "ready" in resumed:
                return True
            members_now = await asyncio.to_thread(_view_ports, survivors)
            if members_now == {w.web_port for w in survivors}:
                resumed["ready"] = time.monotonic() - killed_at
                return True
            return False

        async def taken_over() -> bool:
            if trickle:
                await produce(bootstrap, names.input, trickle[:10])
                del trickle[:10]
            ready = await survivors_ready()
            return ready and victim_output_resumed()

        await poll(taken_over, 180.0, "takeover", period_s=0.25)
        await produce_paced(bootstrap, names.input, trickle)

    await drain_then_flush(kafka, names, scenario)
    finals = await wait_for_finals(kafka, names, expected)
    await assert_exact_explained(kafka, names, scenario, finals, expected)
    figures = {
        "standby_replicas": int(standby),
        "session_timeout_s": 6,
        "survivors_ready_s": round(resumed["ready"], 1),
        "victim_partitions_output_s": round(resumed["output"], 1),
        "takeover_s": round(max(resumed.values()), 1),
    }
    TAKEOVER[standby] = figures
    print(f"\ntakeover after kill -9: {figures}")  # noqa: T201
    write_result("takeover", {f"standby_{k}": v for k, v in TAKEOVER.items()})
    for worker in survivors:
        assert worker.stop() == 0


def _view_ports(workers: list[Any]) -> set[int] | None:
    """Ports in the group's assignment if every worker is ready and agrees on it."""
    views = []
    for worker in workers:
        if worker.http("/readyz")[0] != 200:
            return None
        views.append(assignment_view(worker))
    if any(v is None or v != views[0] for v in views):
        return None
    return {m.web_port for m in views[0] or []}

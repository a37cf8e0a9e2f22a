"""The query API: any replica answers for any key, with exactly what the topic shows."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from streams.runtime.windows import parse_windows
from tests.support.broker import Broker
from tests.support.kafka_io import create_topic, produce, read_topic
from tests.support.scenario import FLUSH_METRIC, final_figures, generate, produce_flushers
from tests.support.worker import TopicNames, WorkerProcess

pytestmark = pytest.mark.integration


def get_json(worker: WorkerProcess, path: str) -> dict[str, Any]:
    status, body = worker.http(path)
    assert status == 200, (path, status, body[:300])
    return dict(json.loads(body))


def latest_finals_in_topic(records: list[Any], scope: str, entity: str) -> list[dict[str, Any]]:
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        value = json.loads(record.value)
        mine = value["subject_id"] if scope == "subject" else value["group_id"]
        if value["scope"] != scope or mine != entity or not value["final"]:
            continue
        w = value["window"]
        family = (value["metric"], f"{w['type']}:{w['size_s']}/{w['step_s']}")
        if family not in latest or w["end"] > latest[family]["window"]["end"]:
            latest[family] = value
    return sorted(latest.values(), key=lambda v: (v["metric"], v["window"]["type"]))


async def test_any_replica_answers_with_what_the_topic_shows(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    scenario = generate(seed=41, n=1500)
    expected = scenario.expected(parse_windows("tumbling:60s,hopping:300s/60s"))
    await create_topic(broker.bootstrap_servers, names.input, 4)
    first = start_worker(INSIGHTS_IDLE_TIMEOUT="1h")
    second = start_worker(INSIGHTS_IDLE_TIMEOUT="1h")
    first.wait_ready()
    second.wait_ready()
    await produce(broker.bootstrap_servers, names.input, scenario.payloads(), partition=0)
    await produce_flushers(broker.bootstrap_servers, names.input, scenario, 4)
    records = await read_topic(
        broker.bootstrap_servers,
        names.rolling,
        until=lambda r: set(expected) <= set(final_figures(r)),
        deadline_s=120,
    )
    subjects = sorted({e.subject_id for e in scenario.events})
    groups = sorted({e.group_id for e in scenario.events if e.group_id})
    group_of = {e.subject_id: e.group_id for e in scenario.events}
    served_by = set()
    for asked in (first, second):
        for scope, entity in [("subject", s) for s in subjects] + [("group", g) for g in groups]:
            path = f"/{scope}s/{urllib.parse.quote(entity)}"
            answer = get_json(asked, path)
            served_by.add(answer["served_by"])
            topic = latest_finals_in_topic(records, scope, entity)
            assert answer["latest_final"] == topic, (scope, entity)
            # The flush event's window is still open: its current figures are served too.
            flushing = [o for o in answer["open"] if o["metric"] == FLUSH_METRIC]
            members = 1 if scope == "subject" else sum(1 for s in subjects if group_of[s] == entity)
            assert flushing and all(o["count"] == members and not o["final"] for o in flushing)
            only_temp = get_json(asked, path + "?metric=temp")
            assert only_temp["latest_final"] == [f for f in topic if f["metric"] == "temp"]
    assert len(served_by) == 2, served_by  # both replicas own some keys; requests were routed
    unknown = get_json(first, "/subjects/nobody")
    assert (unknown["open"], unknown["latest_final"]) == ([], [])
    openapi = get_json(second, "/openapi.json")
    assert set(openapi["paths"]) == {"/subjects/{subject_id}", "/groups/{group_id}"}
    assert first.stop() == 0 and second.stop() == 0

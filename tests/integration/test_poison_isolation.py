"""Poison messages among ordinary traffic: lone surrogates (valid JSON, escaped) in every
string field, offsets past the ends of the date range, a time in the last minute of year
9999, values whose window sum would overflow. Each is one `invalid` dead letter; records no
worker wrote on the internal keyed topic are `undecodable` ones; the same worker goes on and
every final is exact."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from models import DeadLetter, loads_model
from streams.runtime.windows import parse_windows
from tests.support.broker import Broker
from tests.support.finals import assert_exact, wait_for_finals
from tests.support.kafka_io import create_topic, produce, read_topic
from tests.support.scenario import generate
from tests.support.worker import TopicNames, WorkerProcess

pytestmark = pytest.mark.integration

WINDOWS = "tumbling:10s,hopping:20s/10s"
GOOD: dict[str, Any] = {
    "observer_id": "o1",
    "subject_id": "s-0",
    "metric": "temp",
    "value": 1.0,
    "observed_at": "2026-11-27T10:00:05Z",
}
POISON: dict[str, dict[str, Any]] = {
    "surrogate-subject": {"subject_id": "s\ud800"},
    "surrogate-observer": {"observer_id": "o\udfff"},
    "surrogate-group": {"group_id": "g\ud800"},
    "surrogate-attribute": {"attributes": {"site": "a\ud800"}},
    "surrogate-attribute-name": {"attributes": {"\ud800": "a"}},
    "date-past-9999": {"observed_at": "9999-12-31T23:59:59-23:59"},
    "date-before-1": {"observed_at": "0001-01-01T00:00:00+23:59"},
    "last-minute-of-9999": {"observed_at": "9999-12-31T23:59:30Z"},
    "sum-overflow-1": {"value": 1.7e308},
    "sum-overflow-2": {"value": 1.7e308},
}
# On the keyed topic, as a foreign producer (or a bug) could write them.
FOREIGN_KEYED = [b"not json", b'{"r": [[1, 2]], "s": null}', b"[[]]", b'{"s": [0]}']


async def test_poison_messages_are_invalid_dead_letters_and_the_worker_goes_on(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    scenario = generate(seed=27, n=600, jitter_ms=2_000, duplicate_share=0.0)
    expected = scenario.expected(parse_windows(WINDOWS))
    good = scenario.payloads()
    poison = [
        (b"s-0", json.dumps({**GOOD, "event_id": event_id, **change}).encode())
        for event_id, change in POISON.items()
    ]
    await create_topic(broker.bootstrap_servers, names.input, 4)
    worker = start_worker(INSIGHTS_WINDOWS=WINDOWS, INSIGHTS_GRACE="2s", INSIGHTS_IDLE_TIMEOUT="3s")
    worker.wait_ready()
    pid = worker.process.pid
    step = len(good) // len(poison)
    mixed = [m for i, p in enumerate(poison) for m in (p, *good[i * step : (i + 1) * step])]
    mixed += good[len(poison) * step :]
    await produce(broker.bootstrap_servers, names.input, mixed[: len(mixed) // 2], partition=0)
    await produce(broker.bootstrap_servers, names.keyed, [(None, v) for v in FOREIGN_KEYED])
    await produce(broker.bootstrap_servers, names.input, mixed[len(mixed) // 2 :], partition=0)

    finals = await wait_for_finals(broker, names, expected, deadline_s=120.0)
    total = len(POISON) + len(FOREIGN_KEYED)
    records = await read_topic(
        broker.bootstrap_servers, names.deadletter, until=lambda r: len(r) >= total
    )
    every = [loads_model(DeadLetter, r.value) for r in records]
    foreign = [d for d in every if d.topic == names.keyed]
    assert sorted((d.value or "").encode() for d in foreign) == sorted(FOREIGN_KEYED)
    assert {d.reason.value for d in foreign} == {"undecodable"}
    letters = [d for d in every if d.topic == names.input]
    assert len(letters) + len(foreign) == len(every) == total
    by_id = {d.event_id: d for d in letters}
    assert_exact(finals, expected)
    assert sorted(by_id) == sorted(POISON)
    assert {d.reason.value for d in letters} == {"invalid"}
    for event_id in ("date-past-9999", "date-before-1", "last-minute-of-9999"):
        assert [e.field for e in by_id[event_id].errors] == ["observed_at"], event_id
    assert worker.process.poll() is None and worker.process.pid == pid
    assert worker.stop() == 0

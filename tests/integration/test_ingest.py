"""The ingest agent on a real broker: valid observations are keyed by subject, every bad
message lands in the dead-letter topic with its reason and original bytes, and the worker
keeps running."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.partitioner import murmur2

from models import DeadLetter, Observation, loads_model
from models.keyed import KeyedObservation, decode_envelope
from tests.support.broker import Broker
from tests.support.kafka_io import (
    count_messages,
    create_topic,
    produce,
    read_topic,
    wait_committed,
)
from tests.support.worker import TopicNames, WorkerProcess

pytestmark = pytest.mark.integration

DESIGN_EXAMPLE = {
    "event_id": "evt-0001",
    "observer_id": "observer-a",
    "subject_id": "s-17",
    "metric": "temp",
    "value": 20.9,
    "observed_at": "2026-11-27T12:00:03.120Z",
    "group_id": "site-7",
    "attributes": {"unit": "C"},
    "schema_version": 1,
}


def unpack(messages: list[Any]) -> list[tuple[KeyedObservation, str | None]]:
    """The keyed records inside the keyed topic's envelopes."""
    return [item for message in messages for item in decode_envelope(message.value)[0]]


def murmur_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as every Kafka client computes it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


async def test_example_and_one_bad_message_leave_exactly_one_dead_letter(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    # 2 input partitions, 4 keyed: not co-partitioned, so every record takes the keyed hop.
    await create_topic(broker.bootstrap_servers, names.input, 2)
    worker = start_worker()
    worker.wait_ready()
    bad_value = b'{"event_id": "evt-0002", "value": "hot"}'
    await produce(
        broker.bootstrap_servers,
        names.input,
        [(b"s-17", _json(DESIGN_EXAMPLE)), (b"bad-key", bad_value)],
        partition=0,
    )

    dead = await read_topic(broker.bootstrap_servers, names.deadletter, until=lambda r: len(r) >= 1)
    keyed = await read_topic(
        broker.bootstrap_servers, names.keyed, until=lambda r: len(unpack(r)) >= 2
    )

    assert len(dead) == 1
    letter = loads_model(DeadLetter, dead[0].value)
    assert letter.reason == "invalid"
    assert {e.field for e in letter.errors} == {
        "observer_id",
        "subject_id",
        "metric",
        "value",
        "observed_at",
    }
    assert (letter.topic, letter.partition, letter.offset) == (names.input, 0, 1)
    assert (letter.key, letter.key_encoding) == ("bad-key", "utf-8")
    assert (letter.value, letter.encoding) == (bad_value.decode(), "utf-8")
    assert letter.event_id == "evt-0002"  # readable even though the record is invalid

    # The subject record, and (it has a group) the group record, each on the partition of
    # its scope's key (the envelope's partition is that key's).
    by_key = {record.kafka_key: record for record, _ in unpack(keyed)}
    for message in keyed:
        for record, _ in decode_envelope(message.value)[0]:
            assert message.partition == murmur_partition(record.kafka_key, 4)
    assert sorted(by_key) == [b"group:site-7", b"s-17"]
    expected = Observation.model_validate(DESIGN_EXAMPLE)
    for record in by_key.values():
        assert record.to_observation() == expected
        assert (record.source_partition, record.source_offset) == (0, 0)
    assert (by_key[b"s-17"].scope, by_key[b"s-17"].entity) == ("subject", "s-17")
    assert (by_key[b"group:site-7"].scope, by_key[b"group:site-7"].entity) == ("group", "site-7")
    assert await count_messages(broker.bootstrap_servers, names.deadletter) == 1
    # Both input records are committed (the next offset to read on partition 0 is 2).
    committed = await wait_committed(broker.bootstrap_servers, names.app_id, names.input, {0: 2})
    assert committed == {0: 2}

    status, body = worker.http("/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert worker.stop() == 0


def _bad_messages(valid: dict[str, Any]) -> list[tuple[str, bytes | None, bytes | None]]:
    """(expected reason, key, value) for every kind of garbage the issue names."""

    def variant(**changes: Any) -> bytes:
        return _json({**valid, **changes})

    nan = variant(value=0).replace(b'"value": 0', b'"value": NaN')
    inf = variant(value=0).replace(b'"value": 0', b'"value": Infinity')
    return [
        ("undecodable", b"k1", b"\x00\xff\xfe not json \x80"),
        ("invalid", None, b"[1, 2, 3]"),
        ("invalid", b"k3", b'"just a string"'),
        ("invalid", b"k4", nan),
        ("invalid", b"k5", inf),
        ("invalid", b"k6", variant(value="21.4")),
        ("invalid", b"k7", variant(value=True)),
        ("invalid", b"k8", variant(observed_at="2026-11-27T12:00:00")),
        ("invalid", b"k9", variant(subject_id="s" * 257)),
        ("too_large", b"k10", variant(attributes={"blob": "x" * 1_000_000})),
        ("unsupported_version", b"k11", variant(schema_version=2)),
        ("undecodable", b"k12", None),
        ("undecodable", b"\xc3\x28", b"{"),
    ]


async def test_garbage_never_stops_the_worker(
    broker: Broker,
    names: TopicNames,
    start_worker: Callable[..., WorkerProcess],
    observation_factory: Callable[..., dict[str, Any]],
) -> None:
    await create_topic(broker.bootstrap_servers, names.input, 3)  # not co-partitioned
    worker = start_worker()
    bad = _bad_messages(observation_factory())
    good = [observation_factory(subject_id=f"s-{i}") for i in range(5)]
    messages = [(key, value) for _, key, value in bad] + [(None, _json(g)) for g in good]
    await produce(broker.bootstrap_servers, names.input, messages, partition=2)
    worker.wait_ready()

    dead = await read_topic(
        broker.bootstrap_servers, names.deadletter, until=lambda r: len(r) >= len(bad)
    )
    keyed = await read_topic(
        broker.bootstrap_servers, names.keyed, until=lambda r: len(unpack(r)) >= len(good)
    )

    letters = sorted((loads_model(DeadLetter, r.value) for r in dead), key=lambda d: d.offset)
    assert [(d.offset, d.reason.value) for d in letters] == [
        (offset, reason) for offset, (reason, _, _) in enumerate(bad)
    ]
    for letter, (_, key, value) in zip(letters, bad, strict=True):
        assert letter.topic == names.input
        assert letter.partition == 2
        assert letter.errors, letter
        if value is None:
            assert letter.value is None
        kept = (
            None
            if letter.value is None
            else base64.b64decode(letter.value)
            if letter.encoding == "base64"
            else letter.value.encode()
        )
        if value is not None and letter.value_bytes is not None:
            # Cut to fit the dead-letter topic: a broker that does not say its limit
            # (the embedded one) is taken to accept 1 MB; Apache Kafka says 16 MiB.
            assert broker.kind == "embedded" and len(value) > 990_000, len(value)
            assert letter.value_bytes == len(value) and kept and value.startswith(kept)
        else:
            assert kept == value
        if letter.key_encoding == "base64":
            assert base64.b64decode(letter.key or "") == key
        else:
            assert (letter.key.encode() if letter.key is not None else None) == key
    assert letters[0].encoding == "base64"
    assert letters[-1].key_encoding == "base64"
    assert sorted(record.kafka_key for record, _ in unpack(keyed)) == sorted(
        g["subject_id"].encode() for g in good
    )
    assert worker.process.poll() is None
    assert worker.stop() == 0


async def test_copartitioned_records_skip_the_keyed_hop(
    broker: Broker,
    names: TopicNames,
    start_worker: Callable[..., WorkerProcess],
    observation_factory: Callable[..., dict[str, Any]],
) -> None:
    """Input and keyed topic co-partitioned (4 and 4): a record read from the partition its
    key maps to is folded in where it was read; one read from another partition, and a
    group record keyed elsewhere, take the keyed hop. Each is counted once either way."""
    bootstrap = broker.bootstrap_servers
    await create_topic(bootstrap, names.input, 4)
    worker = start_worker()
    home = [observation_factory(subject_id=f"home-{i}") for i in range(6)]
    away = [observation_factory(subject_id=f"away-{i}", group_id="site-1") for i in range(3)]
    placed = [(o, murmur_partition(o["subject_id"].encode(), 4)) for o in home] + [
        (o, (murmur_partition(o["subject_id"].encode(), 4) + 1) % 4) for o in away
    ]
    for observation, partition in placed:
        key = observation["subject_id"].encode()
        await produce(bootstrap, names.input, [(key, _json(observation))], partition=partition)
    worker.wait_ready()

    def counts(records: list[Any]) -> dict[str, int]:
        latest: dict[str, int] = {}
        for record in records:
            value = json.loads(record.value)
            entity = value["subject_id"] if value["scope"] == "subject" else value["group_id"]
            latest[entity] = max(latest.get(entity, 0), value["count"])
        return latest

    wanted = {o["subject_id"]: 1 for o in home + away} | {"site-1": len(away)}
    rolling = await read_topic(
        bootstrap, names.rolling, until=lambda r: counts(r) == wanted, deadline_s=90.0
    )
    assert counts(rolling) == wanted
    per_partition = {p: sum(1 for _, q in placed if q == p) for p in range(4)}
    wanted_offsets = {p: n for p, n in per_partition.items() if n}
    assert await wait_committed(bootstrap, names.app_id, names.input, wanted_offsets) == (
        wanted_offsets
    )

    # Only the away subjects and the group records crossed the keyed topic.
    hopped = [o["subject_id"].encode() for o in away]
    group_hops = [
        o for o, p in placed if "group_id" in o and murmur_partition(b"group:site-1", 4) != p
    ]
    expected_keys = sorted(hopped + [b"group:site-1"] * len(group_hops))
    keyed = await read_topic(
        bootstrap, names.keyed, until=lambda r: len(unpack(r)) >= len(expected_keys)
    )
    assert sorted(record.kafka_key for record, _ in unpack(keyed)) == expected_keys
    assert await count_messages(bootstrap, names.keyed) == len(keyed)
    assert worker.stop() == 0

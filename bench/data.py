"""Bench input: observations from the project's generator, preloaded or produced at a rate.

Two stream profiles (`PROFILES`): `ideal` (valid, in order, epoch-ms times, no groups) and
`realistic` (the generator's mix: 90% RFC 3339 times, groups, 1% invalid, 1% duplicates,
0.5% late by hours, 0.3% spikes, and every event up to `JITTER_MS` out of order, within
every candidate's 30 s grace). Every input record's Kafka timestamp is its event time
(epoch ms; an invalid message gets its send position's), so event time and record time
agree for every candidate (Faust's windowed tables use the record timestamp, Quix and our
worker read `observed_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from streams.cli.generator import GeneratorConfig, Kind, ObservationGenerator

__all__ = [
    "INTERVAL_MS",
    "JITTER_MS",
    "PROFILES",
    "SUBJECTS",
    "BenchEvent",
    "Profile",
    "bench_events",
    "create_topics",
    "delete_topics",
    "list_topics",
    "observations",
    "preload",
    "produce_at_rate",
    "records",
    "recovery_observations",
]

SUBJECTS = 1000
METRICS = 4
INTERVAL_MS = 2.0  # event time advances 500 events per second: ~30k events per 60 s window
_SEND_CHUNK = 20_000
_RETENTION_MS = str(7 * 24 * 3600 * 1000)


JITTER_MS = 5_000  # realistic: how far out of order an event may arrive (grace is 30 s)


@dataclass(frozen=True)
class Profile:
    """A stream profile: the generator's mix of kinds and time formats, and reordering."""

    name: str
    groups: int
    invalid_share: float
    duplicate_share: float
    late_share: float
    spike_share: float
    epoch_ms_share: float
    jitter_ms: int


PROFILES: dict[str, Profile] = {
    "ideal": Profile("ideal", 0, 0.0, 0.0, 0.0, 0.0, 1.0, 0),
    "realistic": Profile("realistic", 5, 0.01, 0.01, 0.005, 0.003, 0.1, JITTER_MS),
}


@dataclass(frozen=True, slots=True)
class BenchEvent:
    """One input record and what the generator made it (the ground truth's input)."""

    key: bytes
    value: bytes
    timestamp_ms: int  # the Kafka record timestamp
    kind: Kind
    observed_ms: int | None  # None: invalid


def generator_config(
    profile: Profile, start_ms: int, subjects: int, interval_ms: float, seed: int
) -> GeneratorConfig:
    """The generator's settings for `profile` (4 metrics, 3 observers)."""
    return GeneratorConfig(
        start_ms=start_ms,
        seed=seed,
        subjects=subjects,
        metrics=METRICS,
        observers=3,
        groups=profile.groups,
        interval_ms=interval_ms,
        invalid_share=profile.invalid_share,
        duplicate_share=profile.duplicate_share,
        late_share=profile.late_share,
        spike_share=profile.spike_share,
        epoch_ms_share=profile.epoch_ms_share,
    )


def bench_events(
    profile: Profile,
    count: int,
    start_ms: int,
    *,
    subjects: int = SUBJECTS,
    interval_ms: float = INTERVAL_MS,
    seed: int = 7,
) -> list[BenchEvent]:
    """`count` records of `profile`, in send order. With jitter, each event is sent as if it
    had waited a uniform 0..jitter_ms after its event time (a duplicate keeps its
    original's time: it is re-sent later, so it may arrive anywhere after it). A late
    event among the first `count // 100` is left out: before every input partition has
    shown its event time, whether it is late depends on the candidate's start."""
    config = generator_config(profile, start_ms, subjects, interval_ms, seed)
    rng = random.Random(seed + 1)
    out: list[tuple[float, int, BenchEvent]] = []
    warm_up = count // 100
    for i, event in enumerate(ObservationGenerator(config, count=count)):
        if event.kind is Kind.LATE and i < warm_up:
            continue
        position_ms = start_ms + int(i * interval_ms)
        stamp = event.observed_ms if event.observed_ms is not None else position_ms
        record = BenchEvent(event.key, event.value, stamp, event.kind, event.observed_ms)
        arrival = position_ms + rng.uniform(0, profile.jitter_ms) if profile.jitter_ms else i
        out.append((arrival, i, record))
    if profile.jitter_ms:
        out.sort(key=lambda item: (item[0], item[1]))
    return [record for _, _, record in out]


def records(events: Iterable[BenchEvent]) -> Iterator[tuple[bytes, bytes, int]]:
    """(key, value, timestamp_ms) of each event, for `preload`."""
    for event in events:
        yield event.key, event.value, event.timestamp_ms


def observations(
    count: int | None, start_ms: int, interval_ms: float = INTERVAL_MS, seed: int = 7
) -> Iterator[tuple[bytes, bytes, int]]:
    """(key, value, observed_ms): valid observations only, epoch-ms times, no group ids."""
    config = generator_config(PROFILES["ideal"], start_ms, SUBJECTS, interval_ms, seed)
    for event in ObservationGenerator(config, count=count):
        assert event.observed_ms is not None
        yield event.key, event.value, event.observed_ms


def recovery_observations(keys: int, start_ms: int) -> Iterator[tuple[bytes, bytes, int]]:
    """One observation for each of `keys` subjects (metric `temp`), all within one second of
    event time, so every window stays open: `keys` live (subject, metric) keys."""
    for i in range(keys):
        subject = f"r-{i:07d}"
        at = start_ms + i % 1000
        doc = {
            "event_id": f"rec-{i}",
            "observer_id": f"observer-{i % 3:02d}",
            "subject_id": subject,
            "metric": "temp",
            "value": 20.0 + (i % 100) / 10,
            "observed_at": at,
        }
        yield subject.encode(), orjson.dumps(doc), at


def _producer(bootstrap: str, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=linger_ms,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
        compression_type=None,
        acks=1,
    )


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                # retention.ms stated: Quix derives its repartition topics' config from it,
                # and the embedded broker reports no defaults.
                NewTopic(name, partitions, 1, topic_configs={"retention.ms": _RETENTION_MS})
                for name in names
            ]
        )
    finally:
        await admin.close()


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Best effort: a broker that cannot delete keeps them (the embedded one forgets all at
    its stop anyway)."""
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(KafkaError, asyncio.TimeoutError):
            await admin.delete_topics(names, timeout_ms=10_000)
    finally:
        await admin.close()


async def preload(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes, int]]) -> int:
    """Send every record (timestamp = observed_ms); returns how many were sent."""
    producer = _producer(bootstrap, linger_ms=20)
    await producer.start()
    sent = 0
    try:
        pending = []
        for key, value, at in records:
            pending.append(await producer.send(topic, value, key=key, timestamp_ms=at))
            if len(pending) >= _SEND_CHUNK:
                await asyncio.gather(*pending)
                sent += len(pending)
                pending.clear()
        await asyncio.gather(*pending)
        sent += len(pending)
    finally:
        await producer.stop()
    return sent


async def produce_at_rate(
    bootstrap: str,
    topic: str,
    rate: float,
    seconds: float,
    until: asyncio.Event | None = None,
    seed: int = 11,
) -> tuple[int, int]:
    """Send `rate` observations per second for `seconds` (or until `until` is set), each
    stamped with its scheduled send time (observed_at = Kafka timestamp). Returns the
    (first, last) scheduled epoch ms."""
    producer = _producer(bootstrap, linger_ms=1)
    await producer.start()
    start_ms = int(time.time() * 1000)
    interval_ms = 1000.0 / rate
    last_ms = start_ms
    try:
        pending = []
        for key, value, at in observations(None, start_ms, interval_ms, seed=seed):
            if at - start_ms >= seconds * 1000 or (until is not None and until.is_set()):
                break
            ahead_s = at / 1000 - time.time()
            if ahead_s > 0:
                if pending:
                    await asyncio.gather(*pending)
                    pending.clear()
                await asyncio.sleep(ahead_s)
            pending.append(await producer.send(topic, value, key=key, timestamp_ms=at))
            last_ms = at
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return start_ms, last_ms

"""Generated observation streams for the engine's integration tests, and their finals."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import ConsumerRecord

from models import format_utc, from_epoch_ms, to_epoch_ms
from streams.runtime.windows import WindowSpec
from tests.support.truth import Event, WindowKey, basic_only, expected_figures, group_by_window

BASE_MS = 1_795_773_600_000  # 2026-11-27T10:00:00Z
FLUSH_METRIC = "flush"


@dataclass
class Scenario:
    """Events in production order (duplicates included) and the late ones sent afterwards."""

    events: list[Event]
    late: list[Event]

    def payloads(self, events: Sequence[Event] | None = None) -> list[tuple[bytes, bytes]]:
        return [
            (e.subject_id.encode(), encode(e)) for e in (self.events if events is None else events)
        ]

    def flushers(self) -> list[tuple[bytes, bytes]]:
        """One event an hour later per subject and group: moves every partition's watermark
        past all windows, so each gets its final."""
        groups = {e.subject_id: e.group_id for e in self.events}
        far = max(e.observed_ms for e in self.events) + 3_600_000
        out = []
        for i, (subject, group) in enumerate(sorted(groups.items())):
            event = Event(f"flush-{i}", "o-flush", subject, FLUSH_METRIC, 0.0, far, group)
            out.append((subject.encode(), encode(event)))
        return out

    def source_flushers(self, partitions: int) -> list[tuple[int, bytes]]:
        """(partition, event) per input partition, an hour after the newest event: every
        source's watermark then passes all windows (a keyed partition waits for the
        slowest source; an empty one would hold it until its idle timeout)."""
        far = max(e.observed_ms for e in self.events) + 3_600_000
        return [
            (
                p,
                encode(
                    Event(f"flush-src-{p}", "o-flush", f"flush-src-{p}", FLUSH_METRIC, 0.0, far)
                ),
            )
            for p in range(partitions)
        ]

    def expected(
        self, specs: Sequence[WindowSpec], *, dedup: bool = True, basic: bool = False
    ) -> dict[WindowKey, dict[str, Any]]:
        """The finals' figures: `dedup` off counts every copy; `basic` nulls what
        `INSIGHTS_AGGREGATES=basic` does not keep."""
        buckets = group_by_window(self.events, specs, dedup=dedup)
        shape = basic_only if basic else dict
        return {
            key: shape(expected_figures(events, (key[5] - key[4]) // 1000))
            for key, events in buckets.items()
        }


def encode(event: Event) -> bytes:
    record: dict[str, Any] = {
        "event_id": event.event_id,
        "observer_id": event.observer_id,
        "subject_id": event.subject_id,
        "metric": event.metric,
        "value": event.value,
        "observed_at": format_utc(from_epoch_ms(event.observed_ms)),
    }
    if event.group_id is not None:
        record["group_id"] = event.group_id
    return json.dumps(record).encode()


def generate(
    seed: int, n: int, *, jitter_ms: int = 25_000, duplicate_share: float = 0.05
) -> Scenario:
    """`n` events over ~n*0.4 s of event time; each is up to `jitter_ms` older than the
    newest before it (inside a 30 s grace), some sent twice."""
    rng = random.Random(seed)
    subjects = [f"s-{i}" for i in range(8)]
    groups = {s: (None if i % 3 == 2 else f"g-{i % 2}") for i, s in enumerate(subjects)}
    events: list[Event] = []
    clock = BASE_MS
    for i in range(n):
        clock += rng.randint(0, 800)
        subject = rng.choice(subjects)
        observed = clock - rng.randint(0, jitter_ms)
        value = round(rng.gauss(50, 12), 4) if rng.random() > 0.02 else rng.choice([-1e6, 0.0, 1e6])
        events.append(
            Event(
                f"evt-{seed}-{i}",
                rng.choice(["o1", "o2", "o3"]),
                subject,
                rng.choice(["temp", "humidity"]),
                value,
                observed,
                groups[subject],
            )
        )
        if rng.random() < duplicate_share:
            events.append(rng.choice(events))
    late = [
        Event(
            f"late-{seed}-{i}", "o1", subjects[i % len(subjects)], "temp", 1.0, BASE_MS + i * 1000
        )
        for i in range(len(subjects))
    ]
    return Scenario(events, late)


def final_figures(
    records: Sequence[ConsumerRecord[Any, Any]],
) -> dict[WindowKey, list[dict[str, Any]]]:
    """Final records (not of the flush metric) by window key, with truth-comparable fields."""
    found: dict[WindowKey, list[dict[str, Any]]] = {}
    for record in records:
        value = json.loads(record.value)
        if not value["final"] or value["metric"] == FLUSH_METRIC:
            continue
        window = value["window"]
        entity = value["subject_id"] if value["scope"] == "subject" else value["group_id"]
        key: WindowKey = (
            value["scope"],
            entity,
            value["metric"],
            window["type"],
            _ms(window["start"]),
            _ms(window["end"]),
        )
        value["first_ms"] = _ms(value["first_at"]) if value["first_at"] else None
        value["last_ms"] = _ms(value["last_at"]) if value["last_at"] else None
        found.setdefault(key, []).append(value)
    return found


def _ms(text: str) -> int:
    return to_epoch_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))


async def produce_flushers(bootstrap: str, topic: str, scenario: Scenario, partitions: int) -> None:
    """The scenario's flushers on partition 0 (each subject's and group's watermark), then
    one event on every partition (each source's)."""
    from tests.support.kafka_io import produce

    await produce(bootstrap, topic, scenario.flushers(), partition=0)
    for partition, event in scenario.source_flushers(partitions):
        await produce(bootstrap, topic, [(None, event)], partition=partition)

"""A candidate's output after its run: read its topic (bounded), and parse each candidate
kind's records into one common form (`Row`) for the ground-truth check.

Record shapes (value JSON; key in brackets):
- our worker (`{run_id}.rolling`): the `insights.rolling` record (scope, subject_id,
  group_id, metric, window {start, end, size_s, ...} as RFC 3339, final, count, sum, ...);
- Quix with group_by ([subject|metric]): {count, sum, min, max, last_ms, start, end,
  emitted_ms}; `.final()` records are finals, `.current()` ones changes;
- Quix without group_by ([subject]): {subject_id, start, end, metrics: {metric: {count,
  sum, min, max}}, last_ms, emitted_ms}: one row per metric;
- raw aggregate: {subject_id, metric, start, count, sum, min, max, last_ms, emitted_ms};
  raw finals add `scope`, and a group scope's record has `group_id` for `subject_id`;
- naive Faust: {key: subject|metric, count, sum, min, max, last_ms, emitted_ms}: no window
  in it; it is the 60 s window holding `last_ms` (the newest event time in the aggregate).
Every aggregate window of the other candidates is tumbling 60 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.roster import Candidate

__all__ = [
    "DeadLetter",
    "OutRecord",
    "Row",
    "emits",
    "parse",
    "parse_dead_letter",
    "read_records",
    "read_values",
]

WINDOW_MS = 60_000  # the other candidates' tumbling window
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class OutRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"")


@dataclass(frozen=True, slots=True)
class Row:
    """One window figure a candidate output, in the truth's terms."""

    scope: str  # subject | group
    key: str  # subject or group id
    metric: str
    start_ms: int
    size_ms: int
    final: bool
    count: int
    sum: float
    min: float
    max: float
    mean: float | None  # None: the record has none
    order: tuple[int, int]  # (partition, offset): arrival order within a partition

    @property
    def window(self) -> tuple[str, str, str, int, int]:
        return (self.scope, self.key, self.metric, self.start_ms, self.size_ms)


async def read_records(
    bootstrap: str, topic: str, bound_s: float = 60.0, quiet_s: float = 2.0
) -> tuple[list[OutRecord], bool]:
    """Every record of `topic` from the beginning, and whether the read is complete: it
    stops after `quiet_s` without records once its position is at the end offsets (read
    again then: the embedded broker's ListOffsets undercounts, so the end offsets alone are
    no reliable stop), or when `bound_s` runs out (incomplete)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[OutRecord] = []
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return out, True
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + bound_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            got = [r for records in batches.values() for r in records]
            out.extend(OutRecord(r.partition, r.offset, r.key, r.value) for r in got)
            if got:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                ends = await consumer.end_offsets(tps)
                positions = [await consumer.position(tp) for tp in tps]
                if all(at >= ends[tp] for at, tp in zip(positions, tps, strict=True)):
                    return out, True
        return out, False
    finally:
        await consumer.stop()


async def read_values(bootstrap: str, topic: str, bound_s: float = 60.0) -> list[bytes]:
    """The values of every record of `topic` (see `read_records`)."""
    records, _ = await read_records(bootstrap, topic, bound_s)
    return [r.value for r in records if r.value is not None]


def emits(candidate: Candidate) -> tuple[bool, bool]:
    """(finals, changes): whether the candidate sends final records, per-update records."""
    if candidate.kind == "insights":
        emit = candidate.emit or "both"
        return emit in ("final", "both"), emit in ("changes", "both")
    if candidate.kind == "quix":
        final = (candidate.emit or "final") == "final"
        return final, not final
    if candidate.kind == "raw" and candidate.mode in ("finals", "finals-groups"):
        return True, False
    return False, True  # raw aggregate, naive Faust: one updated aggregate per event


def _iso_ms(text: str) -> int:
    return (datetime.fromisoformat(text) - _EPOCH) // timedelta(milliseconds=1)


def _text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode()


def parse(candidate: Candidate, record: OutRecord) -> list[Row]:
    """The rows of one output record (KeyError/ValueError/TypeError: not the shape)."""
    doc: dict[str, Any] = json.loads(record.value or b"null")
    order = (record.partition, record.offset)
    if candidate.kind == "insights":
        window = doc["window"]
        start = _iso_ms(window["start"])
        scope = doc["scope"]
        return [
            Row(
                scope,
                doc["subject_id"] if scope == "subject" else doc["group_id"],
                doc["metric"],
                start,
                _iso_ms(window["end"]) - start,
                bool(doc["final"]),
                doc["count"],
                doc["sum"],
                doc["min"],
                doc["max"],
                doc["mean"],
                order,
            )
        ]
    final = emits(candidate)[0]
    if isinstance(doc.get("metrics"), dict):  # Quix without group_by: all metrics in one
        start = int(doc["start"])
        size = int(doc["end"]) - start
        return [
            Row(
                "subject",
                doc["subject_id"],
                metric,
                start,
                size,
                final,
                agg["count"],
                agg["sum"],
                agg["min"],
                agg["max"],
                None,
                order,
            )
            for metric, agg in doc["metrics"].items()
        ]
    scope = "subject"
    if "key" in doc:  # naive Faust
        subject, metric = doc["key"].rsplit("|", 1)
        last = int(doc["last_ms"])
        start, size = last - last % WINDOW_MS, WINDOW_MS
    elif "metric" in doc:  # raw aggregate, raw finals
        scope = doc.get("scope", scope)
        subject = doc["subject_id"] if scope == "subject" else doc["group_id"]
        metric = doc["metric"]
        start, size = int(doc["start"]), WINDOW_MS
    else:  # Quix with group_by: subject and metric in the record key
        subject, metric = _text(record.key).rsplit("|", 1)
        start = int(doc["start"])
        size = int(doc["end"]) - start
    return [
        Row(
            scope,
            subject,
            metric,
            start,
            size,
            final,
            doc["count"],
            doc["sum"],
            doc["min"],
            doc["max"],
            None,
            order,
        )
    ]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What the check needs of one of our worker's dead letters."""

    reason: str
    event_id: str | None
    scope: str | None  # for `late`: the scope whose every window had closed
    order: tuple[int, int]


_LATE_SCOPE = re.compile(r"every (subject|group) window holding observed_at has closed")


def parse_dead_letter(record: OutRecord) -> DeadLetter:
    """An `observations.deadletter` record (docs/contracts.md)."""
    doc = json.loads(record.value or b"null")
    scope = None
    if doc["reason"] == "late":
        for error in doc.get("errors") or ():
            match = _LATE_SCOPE.match(error.get("message", ""))
            if match:
                scope = match.group(1)
    return DeadLetter(doc["reason"], doc.get("event_id"), scope, (record.partition, record.offset))


def read_output(bootstrap: str, topic: str, bound_s: float = 120.0) -> tuple[list[OutRecord], bool]:
    """`read_records` from synchronous code."""
    return asyncio.run(read_records(bootstrap, topic, bound_s))

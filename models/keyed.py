"""The internal record of the keyed stream: a validated observation, routed by entity.

Internal and trusted (written only by the ingest agent), so it is a compact JSON array and a
slotted dataclass rather than a pydantic model: decoding it is on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from models.observation import Observation
from models.timefmt import from_epoch_ms

__all__ = [
    "ENVELOPE_MAX_BYTES",
    "Chunk",
    "KeyedObservation",
    "SourceReport",
    "Traced",
    "decode_envelope",
    "encode_envelopes",
]

Scope = Literal["subject", "group"]


@dataclass(slots=True)  # not frozen: a frozen init costs ~1.4 µs more, twice per event
class KeyedObservation:
    """An observation for one aggregation scope: its subject, or its group (treat as
    immutable)."""

    scope: Scope
    entity: str  # subject_id (scope subject) or group_id (scope group)
    event_id: str
    observer_id: str
    subject_id: str
    group_id: str | None
    metric: str
    value: float
    observed_ms: int
    attributes: dict[str, str] | None
    source_partition: int  # where the observation was read from the input topic
    source_offset: int
    source_timestamp_ms: int  # the input record's Kafka timestamp (for latency)

    @property
    def kafka_key(self) -> bytes:
        """Partitioning key: `subject_id`, or `group:<group_id>`."""
        return (self.entity if self.scope == "subject" else f"group:{self.entity}").encode()

    @classmethod
    def for_scopes(
        cls, obs: Observation, source_partition: int, source_offset: int, source_timestamp_ms: int
    ) -> list[KeyedObservation]:
        """The subject record, plus the group record when the observation has a group."""
        common = (
            obs.event_id,
            obs.observer_id,
            obs.subject_id,
            obs.group_id,
            obs.metric,
            obs.value,
            obs.observed_ms,
            obs.attributes,
            source_partition,
            source_offset,
            source_timestamp_ms,
        )
        records = [cls("subject", obs.subject_id, *common)]
        if obs.group_id is not None:
            records.append(cls("group", obs.group_id, *common))
        return records

    def to_bytes(self) -> bytes:
        """Compact JSON array, field order as declared."""
        return orjson.dumps(self.to_list())

    def to_list(self) -> list[Any]:
        """The fields as a list, in declaration order."""
        return [
            self.scope,
            self.entity,
            self.event_id,
            self.observer_id,
            self.subject_id,
            self.group_id,
            self.metric,
            self.value,
            self.observed_ms,
            self.attributes,
            self.source_partition,
            self.source_offset,
            self.source_timestamp_ms,
        ]

    def to_observation(self) -> Observation:
        """The observation as it was accepted (for dead letters of late events)."""
        return Observation.model_construct(
            event_id=self.event_id,
            observer_id=self.observer_id,
            subject_id=self.subject_id,
            metric=self.metric,
            value=self.value,
            observed_at=from_epoch_ms(self.observed_ms),
            group_id=self.group_id,
            attributes=self.attributes,
            schema_version=1,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> KeyedObservation:
        """Inverse of `to_bytes`."""
        return cls(*orjson.loads(raw))


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What one source (input partition) says of its progress, after the records it sent
    with it: they travel together, so a keyed partition never learns a source's progress
    before the records that made it.

    `watermark_ms`: the greatest valid `observed_at` read from the source (None: nothing
    valid yet); `sources`: how many input partitions there are; `idle_at_ms`: the wall time
    at which the source was found caught up (its position at the log end) and silent for
    the idle timeout, None while it is not.
    """

    source: int
    watermark_ms: int | None
    sources: int
    idle_at_ms: int | None = None

    def to_list(self) -> list[Any]:
        return [self.source, self.watermark_ms, self.sources, self.idle_at_ms]


# Keyed records, each with its W3C traceparent or None.
Traced = list[tuple[KeyedObservation, str | None]]
# Keyed records, when they were received (epoch ms), and the report of their source that
# follows them (None: none): what a partition's state folds in.
Chunk = tuple[Traced, int, SourceReport | None]


# Below the 1 MiB a broker accepts per record by default (message.max.bytes): a fetched
# batch of 1 MiB can key to more than that (a subject and a group copy per observation).
ENVELOPE_MAX_BYTES: Final = 512 * 1024


def encode_envelopes(
    items: Traced, report: SourceReport | None = None, max_bytes: int = ENVELOPE_MAX_BYTES
) -> list[bytes]:
    """Many keyed records (each with its W3C traceparent or None) and their source's report
    in as few messages of at most `max_bytes` as halving finds, in order: the keyed hop
    carries them per (source partition, destination partition) and batch. Only the last
    message carries the report (it covers all the records). A single record over the bound
    goes alone; no records and a report make a control message."""
    mark = report.to_list() if report is not None else None
    raw = orjson.dumps({"r": [[*record.to_list(), trace] for record, trace in items], "s": mark})
    if len(raw) <= max_bytes or len(items) < 2:
        return [raw]
    half = len(items) // 2
    return encode_envelopes(items[:half], None, max_bytes) + encode_envelopes(
        items[half:], report, max_bytes
    )


def decode_envelope(raw: bytes) -> tuple[Traced, SourceReport | None]:
    """Inverse of `encode_envelopes`, one message at a time. (A bare list of records, as
    written before source reports, has none.)"""
    document = orjson.loads(raw)
    if type(document) is list:
        return [(KeyedObservation(*item[:-1]), item[-1]) for item in document], None
    mark = document["s"]
    report = SourceReport(*mark) if mark is not None else None
    return [(KeyedObservation(*item[:-1]), item[-1]) for item in document["r"]], report

"""A stand-in for aiokafka's producer in unit tests of batched sends: real record batches
(aiokafka's `BatchBuilder`, read back with its `DefaultRecordBatch`), no broker."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

__all__ = ["RecordingProducer", "SentBatch"]


@dataclass(frozen=True)
class SentBatch:
    """One batch handed to `send_batch`: where to, and its records (key, value, headers)."""

    topic: str
    partition: int
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]


@dataclass
class RecordingProducer:
    """Keeps every batch sent, in order; each is delivered at once with the offset of its
    first record (offsets count up per partition from 0, as on an empty topic)."""

    batch_bytes: int = 16_384
    batches: list[SentBatch] = field(default_factory=list)
    _next_offset: defaultdict[tuple[str, int], int] = field(
        default_factory=lambda: defaultdict(int)
    )

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        assert batch.closed(), "a batch is closed before it is sent"
        records = [
            (r.key, r.value, list(r.headers)) for r in DefaultRecordBatch(bytes(batch._build()))
        ]
        self.batches.append(SentBatch(topic, partition, records))
        offset = self._next_offset[topic, partition]
        self._next_offset[topic, partition] += len(records)
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        delivery.set_result(SimpleNamespace(topic=topic, partition=partition, offset=offset))
        return delivery

"""Ingest: decode and validate every input message; dead-letter the unusable; key the rest
by subject (and, when it has one, by group) onto the internal keyed topic."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import faust
import structlog
from opentelemetry.trace import SpanKind

from agents.batching import consume_lane
from agents.deadletters import DeadLetterSink
from models import DecodeError
from models.fast_decode import decode_keyed
from models.keyed import Chunk, Traced, encode_envelopes
from streams.faust_compat import batch_lane, copartitioned, key_partition, send_caused_by
from streams.metrics import Metrics
from streams.settings import Settings
from streams.topics import Topics
from streams.tracing import Headers, Tracing, current_headers

__all__ = ["Folder", "Ingest", "attach_ingest"]

logger = structlog.get_logger(__name__)


class Folder(Protocol):
    """Where records keyed to a partition of this worker can be folded in directly."""

    async def fold(self, partition: int, chunks: list[Chunk], *, defer: bool = False) -> bool: ...

    def when_durable(self, partition: int, callback: Callable[[], None]) -> bool: ...


class Ingest:
    """decode → validate → key; one call per batch of input events.

    A record keyed to the keyed-topic partition of the same number as its input partition
    skips the keyed hop when the two topics are co-partitioned (same partition count): its
    state lives on this worker, under the same transactional id, so it is folded in
    directly (`local`). The rest travel the keyed topic.
    """

    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        settings: Settings,
        metrics: Metrics,
        sink: DeadLetterSink,
        tracing: Tracing,
    ) -> None:
        self.app = app
        self.max_bytes = settings.max_message_bytes
        self.input_topic = topics.input.get_topic_name()
        self.keyed_topic = topics.keyed.get_topic_name()
        self.metrics = metrics
        self.sink = sink
        self.tracing = tracing
        self.local: Folder | None = None

    async def process(self, records: list[Any], on_done: Callable[[], None] | None = None) -> None:
        """Handle a fetched batch (aiokafka `ConsumerRecord`s) in order: dead letters go out
        as found; valid observations are folded in directly or go to the keyed topic in one
        envelope per (source partition, keyed partition).

        With `on_done` (records of one partition, from the lane) directly folded records
        wait for the timer's flush, and `on_done` is called once they are durable (right
        away when there are none): the batch may be acknowledged then. Without it they
        are flushed before this returns.
        """
        started = time.perf_counter()
        envelopes: dict[tuple[int, int], Traced] = {}
        local: dict[int, Traced] | None = None
        if self.local is not None and copartitioned(self.app, self.input_topic, self.keyed_topic):
            local = {}
        valid = 0
        for message in records:
            if self.tracing.enabled:
                with self.tracing.span(
                    "observations process",
                    parent=Tracing.extract(message.headers),
                    kind=SpanKind.CONSUMER,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                ):
                    headers = current_headers()
                    failure = self._route(message, envelopes, local, headers)
                    if failure is not None:
                        await self._dead_letter(message, failure, headers)
            else:  # per event: no coroutine unless it is a dead letter
                failure = self._route(message, envelopes, local, None)
                if failure is not None:
                    await self._dead_letter(message, failure, None)
            valid += failure is None
        defer = on_done is not None
        if local and self.local is not None:
            received_ms = int(time.time() * 1000)
            for partition, items in local.items():
                if not await self.local.fold(partition, [(items, received_ms)], defer=defer):
                    envelopes.setdefault((partition, partition), []).extend(items)
        for (source, destination), items in envelopes.items():
            for envelope in encode_envelopes(items):
                await send_caused_by(
                    self.app,
                    self.keyed_topic,
                    None,
                    envelope,
                    source_topic=self.input_topic,
                    source_partition=source,
                    partition=destination,
                )
        self.metrics.events_received.inc(len(records))
        self.metrics.events_valid.inc(valid)
        self.metrics.batch_seconds.labels(agent="ingest").observe(time.perf_counter() - started)
        if on_done is not None:
            # Behind every earlier deferred batch of this partition, also when this one
            # folded nothing in: acknowledgements must come in offset order.
            folder = self.local if local is not None and records else None
            if folder is None or not folder.when_durable(records[0].partition, on_done):
                on_done()

    def _route(
        self,
        message: Any,
        envelopes: dict[tuple[int, int], Traced],
        local: dict[int, Traced] | None,
        headers: Headers | None,
    ) -> DecodeError | None:
        """Decode a message and file its keyed records (to fold here, or to send to their
        keyed partition); the DecodeError, with the dead-letter reason, if it is unusable."""
        source = message.partition
        try:
            records = decode_keyed(
                message.value,
                max_bytes=self.max_bytes,
                partition=source,
                offset=message.offset,
                timestamp_ms=message.timestamp,
            )
        except DecodeError as exc:
            return exc
        traceparent = dict(headers).get("traceparent") if headers else None
        trace = traceparent.decode() if traceparent else None
        for record in records:
            destination = key_partition(self.app, self.keyed_topic, record.kafka_key)
            if local is not None and destination == source:
                local.setdefault(source, []).append((record, trace))
            else:
                envelopes.setdefault((source, destination), []).append((record, trace))
        return None

    async def _dead_letter(
        self, message: Any, failure: DecodeError, headers: Headers | None
    ) -> None:
        await self.sink.send(
            message, failure.reason, failure.errors, headers=headers, event_id=failure.event_id
        )


def attach_ingest(
    app: faust.App,
    topics: Topics,
    settings: Settings,
    metrics: Metrics,
    sink: DeadLetterSink,
    tracing: Tracing,
) -> Ingest:
    """Register the ingest agent: input topic -> (dead letters | keyed topic)."""
    ingest = Ingest(app, topics, settings, metrics, sink, tracing)

    lane = batch_lane(app, {ingest.input_topic})

    @app.agent(topics.input, name="ingest")
    async def ingest_agent(stream: faust.StreamT[bytes]) -> None:
        # The agent subscribes the input topic; its records arrive by the lane, a fetched
        # batch per partition, never through `stream`.
        await consume_lane(app, lane, ingest.process)

    return ingest

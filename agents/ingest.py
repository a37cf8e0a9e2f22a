"""Ingest: decode and validate every input message; dead-letter the unusable; key the rest
by subject (and, when it has one, by group) onto the internal keyed topic, with each input
partition's event-time progress (`agents.source_progress`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import faust
import structlog
from opentelemetry.trace import SpanKind

from agents.batching import consume_lane
from agents.deadletters import DeadLetterSink
from agents.source_progress import FetchState, SourceProgress
from models import DeadLetterReason, DecodeError, FieldError
from models.fast_decode import decode_keyed
from models.keyed import Chunk, SourceReport, Traced, encode_envelopes
from models.observation import MIN_EPOCH_MS
from streams.faust.batch_lane import BatchLane, batch_lane
from streams.faust.commit_gate import commit_gate
from streams.faust.consumer_state import (
    copartitioned,
    fetch_state,
    owned_partitions,
    partition_count,
    paused_partitions,
)
from streams.faust.sends import key_partition, send_caused_by
from streams.runtime.metrics import Metrics
from streams.runtime.settings import Settings
from streams.runtime.topics import Topics
from streams.runtime.tracing import Headers, Tracing, current_headers

__all__ = ["Folder", "Ingest", "attach_ingest"]

logger = structlog.get_logger(__name__)


class Folder(Protocol):
    """Where records keyed to a partition of this worker can be folded in directly."""

    async def fold(self, partition: int, chunks: list[Chunk], *, defer: bool = False) -> bool: ...

    def when_durable(self, partition: int, callback: Callable[[], None]) -> bool: ...

    async def observe(self, partition: int, report: SourceReport) -> bool: ...


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
        self.lane: BatchLane | None = None
        self.max_bytes = settings.max_message_bytes
        self.max_future_s = settings.max_future_s
        # The earliest observed_at whose every window starts in year 1 or later (a window
        # starting before it cannot be written as a date): earlier ones are invalid.
        self.earliest_ms = MIN_EPOCH_MS + max(w.size_s for w in settings.windows) * 1000
        self.progress = SourceProgress(0, settings.idle_timeout_s)
        self.input_topic = topics.input.get_topic_name()
        self.keyed_topic = topics.keyed.get_topic_name()
        self.metrics = metrics
        self.sink = sink
        self.tracing = tracing
        self.local: Folder | None = None
        # Held from a batch's progress being taken until its keyed records are queued to
        # the producer, and by the timer's reports: a source's report must never reach a
        # keyed partition before the records that made it (there it would close their
        # windows early, and the records would miss them).
        self._reporting = asyncio.Lock()
        app.on_partitions_revoked.connect(self._on_revoked)

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
        self._count_sources()
        now_s, received_ms = time.monotonic(), int(time.time() * 1000)
        latest_ms = received_ms + round(self.max_future_s * 1000)
        marks: dict[int, int] = {}  # source -> greatest valid observed_at in this batch
        # Every send of the batch (dead letters, keyed records, control records): awaited
        # before the batch may be acknowledged; one that fails fails the batch.
        deliveries: list[Awaitable[Any]] = []
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
                    failure = self._route(message, envelopes, local, headers, latest_ms, marks)
                    if failure is not None:
                        deliveries.append(await self._dead_letter(message, failure, headers))
            else:  # per event: no coroutine unless it is a dead letter
                failure = self._route(message, envelopes, local, None, latest_ms, marks)
                if failure is not None:
                    deliveries.append(await self._dead_letter(message, failure, None))
            valid += failure is None
        # The batch's progress goes with its records: a keyed partition learns it only
        # after the records that made it (the same partition, or the same direct fold).
        read_to: dict[int, int] = {}
        for message in records:
            read_to[message.partition] = message.offset + 1
        refused = False
        async with self._reporting:  # see __init__
            for source, offset in read_to.items():
                self.progress.read(source, marks.get(source), offset, now_s)
            defer = on_done is not None
            if local and self.local is not None:
                for partition, items in local.items():
                    report = self.progress.report(partition, partition, now_s)
                    chunk: Chunk = (items, received_ms, report)
                    if await self.local.fold(partition, [chunk], defer=defer):
                        continue
                    if on_done is not None and self.lane is not None:
                        # A rebalance is under way (the state is not here, or not recovered):
                        # the next generation reads the batch again from the committed offset.
                        # Not over the keyed topic: those records could arrive after later
                        # ones folded here, whose progress would then have made them late.
                        self.lane.spoil(records[0].topic, partition)
                        refused = True
                    else:
                        envelopes.setdefault((partition, partition), []).extend(items)
            for (source, destination), items in envelopes.items():
                report = self.progress.report(source, destination, now_s)
                deliveries.extend(await self._send(source, destination, items, report))
        await asyncio.gather(*deliveries)
        self.metrics.events_received.inc(len(records))
        self.metrics.events_valid.inc(valid)
        self.metrics.batch_seconds.labels(agent="ingest").observe(time.perf_counter() - started)
        if on_done is not None and not refused:
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
        latest_ms: int,
        marks: dict[int, int],
    ) -> DecodeError | None:
        """Decode a message and file its keyed records (to fold here, or to send to their
        keyed partition), raising its source's mark in `marks`; the DecodeError, with the
        dead-letter reason, if it is unusable (also when its `observed_at` lies beyond
        `latest_ms`, the worker's clock plus `INSIGHTS_MAX_FUTURE`)."""
        source = message.partition
        try:
            records = decode_keyed(
                message.value,
                max_bytes=self.max_bytes,
                partition=source,
                offset=message.offset,
                timestamp_ms=message.timestamp,
            )
            observed_ms = records[0].observed_ms
            if observed_ms > latest_ms:
                return self._too_far_ahead(records[0].event_id)
            if observed_ms < self.earliest_ms:
                return self._too_early(records[0].event_id)
            traceparent = dict(headers).get("traceparent") if headers else None
            trace = traceparent.decode() if traceparent else None
            routes = [(key_partition(self.app, self.keyed_topic, r.kafka_key), r) for r in records]
        except DecodeError as exc:
            return exc
        except Exception as exc:  # one message's content: it fails, not the partition
            return _unprocessable(exc)
        # Filed only once every record of the message could be routed: all or none.
        if observed_ms > marks.get(source, observed_ms - 1):
            marks[source] = observed_ms
        for destination, record in routes:
            if local is not None and destination == source:
                local.setdefault(source, []).append((record, trace))
            else:
                envelopes.setdefault((source, destination), []).append((record, trace))
        return None

    def _too_far_ahead(self, event_id: str) -> DecodeError:
        bound = f"{self.max_future_s:g}s"
        message = f"is more than INSIGHTS_MAX_FUTURE ({bound}) ahead of the worker's clock"
        errors = [FieldError(field="observed_at", message=message)]
        return DecodeError(DeadLetterReason.INVALID, errors, event_id=event_id)

    def _too_early(self, event_id: str) -> DecodeError:
        message = "is so early that one of its windows would start before year 1"
        errors = [FieldError(field="observed_at", message=message)]
        return DecodeError(DeadLetterReason.INVALID, errors, event_id=event_id)

    async def _send(
        self, source: int, destination: int, items: Traced, report: SourceReport
    ) -> list[Awaitable[Any]]:
        """Records (maybe none) and their source's report to a keyed partition over the
        keyed topic, in the source partition's transaction; the delivery futures."""
        return [
            await send_caused_by(
                self.app,
                self.keyed_topic,
                None,
                envelope,
                source_topic=self.input_topic,
                source_partition=source,
                partition=destination,
            )
            for envelope in encode_envelopes(items, report)
        ]

    def _count_sources(self) -> None:
        count = partition_count(self.app, self.input_topic)
        if count is not None:
            self.progress.sources = count

    async def tick(self) -> None:
        """Timer: tell every keyed partition the progress of this worker's input partitions
        it has not heard of yet, and while one is idle repeat that it is (the direct fold
        for the keyed partition of the same number, else a control record)."""
        self._count_sources()
        destinations = partition_count(self.app, self.keyed_topic)
        if not destinations or not self.progress.sources:
            return
        app: Any = self.app
        stable = (
            not app.rebalancing
            and app.tables.recovery.completed.is_set()
            and app.consumer.flow_active
        )
        paused = paused_partitions(self.app)
        direct = self.local is not None and copartitioned(
            self.app, self.input_topic, self.keyed_topic
        )
        deliveries: list[Awaitable[Any]] = []
        async with self._reporting:  # never between a batch's progress and its records
            now_s, now_ms = time.monotonic(), int(time.time() * 1000)
            for tp in sorted(app.consumer.assignment()):
                if tp.topic != self.input_topic:
                    continue
                position, end, polled_ms = fetch_state(self.app, tp)
                fetched = self.lane.fetched(tp) if self.lane is not None else None
                fetch = FetchState(position, end, polled_ms, fetched, stable and tp not in paused)
                for destination, report in self.progress.due(
                    tp.partition, fetch, destinations, now_s, now_ms
                ):
                    if direct and destination == tp.partition and self.local is not None:
                        # Only by the direct path, as its records go: over the keyed topic it
                        # could overtake records of this source still to be folded in here.
                        if not await self.local.observe(destination, report):
                            self.progress.untell(tp.partition, destination)  # again next time
                        continue
                    deliveries.extend(await self._send(tp.partition, destination, [], report))
        await asyncio.gather(*deliveries)

    def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Input partitions revoked: forget their progress (rebuilt from the input)."""
        revoked = args[0] if args else kwargs.get("revoked", ())
        self.progress.forget({tp.partition for tp in revoked if tp.topic == self.input_topic})

    async def _dead_letter(
        self, message: Any, failure: DecodeError, headers: Headers | None
    ) -> Awaitable[None]:
        return await self.sink.send(
            message, failure.reason, failure.errors, headers=headers, event_id=failure.event_id
        )


def _unprocessable(exc: Exception) -> DecodeError:
    """Any other failure while handling one message's content: its dead letter names the
    exception (type and message), never the value."""
    logger.warning("message_unprocessable", error_type=type(exc).__name__)
    message = f"{type(exc).__name__}: {exc}"[:500]
    return DecodeError(DeadLetterReason.UNPROCESSABLE, [FieldError(field="", message=message)])


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

    lane = ingest.lane = batch_lane(app, {ingest.input_topic})

    @app.agent(topics.input, name="ingest")
    async def ingest_agent(stream: faust.StreamT[bytes]) -> None:
        # The agent subscribes the input topic; its records arrive by the lane, a fetched
        # batch per partition, never through `stream`.
        await consume_lane(app, lane, ingest.process)

    @app.timer(interval=settings.flush_interval_s)  # type: ignore[untyped-decorator]
    async def ingest_tick() -> None:
        if owned_partitions(app, ingest.input_topic):
            async with commit_gate(app).work():  # control records in the sources' transactions
                await ingest.tick()

    return ingest

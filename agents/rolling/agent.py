"""The rolling agent: keyed observations -> dedup -> window panes -> insights.rolling.

Batch-shaped: `take_events` hands over up to `batch_max` events (or what arrived within the
flush interval); each batch is folded into per-partition state, the state that changed is
written to the changelog table once per key, finals and coalesced changes are sent, and only
then are the batch's events acknowledged — so a committed offset never runs ahead of the
state and outputs it caused (at-least-once; with `exactly_once` all of it is one transaction).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Final, TypeVar

import faust
import structlog
from faust.types import TP
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from agents.anomaly import AnomalyConfig, anomaly_record
from agents.batching import consume_batches
from agents.deadletters import DeadLetterSink
from agents.observers.book import ScoreRow
from agents.observers.coordinator import Coordinator
from agents.rolling.aggregate import AGGREGATE_KINDS, Aggregate
from agents.rolling.records import insight_record
from agents.rolling.state import Emission, Outcome, PartitionState, StateKey
from models import DeadLetterReason, FieldError, dumps, format_utc, from_epoch_ms, utc_now
from models.keyed import Chunk, KeyedObservation, SourceReport, decode_envelope
from streams.faust.acks import never_commit
from streams.faust.commit_gate import commit_gate
from streams.faust.consumer_state import owned_partitions
from streams.faust.sends import Outbound, key_partition, send_batched_caused_by
from streams.faust.table_writes import write_table
from streams.runtime.metrics import Metrics
from streams.runtime.settings import Settings
from streams.runtime.tables import Tables
from streams.runtime.topics import Topics
from streams.runtime.tracing import Tracing, current_headers
from streams.runtime.windows import WindowPlan

__all__ = ["RollingEngine", "attach_rolling"]

logger = structlog.get_logger(__name__)

BATCH_MAX: Final = 5000
BATCH_WAIT_S: Final = 0.05
_LATENCY_SAMPLES: Final = 64
_DUE_FRACTION: Final = 0.75
_PERSIST_PHASES: Final = 8  # INSIGHTS_PERSIST_INTERVAL: partitions persist in 8 turns
_SEND_SLICE: Final = 4096  # records (or changelog writes) in flight per flush at a time

_T = TypeVar("_T")


class RollingEngine:
    """Per-partition rolling state of one worker, loaded lazily from the changelog table."""

    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        tables: Tables,
        settings: Settings,
        metrics: Metrics,
        sink: DeadLetterSink,
        tracing: Tracing,
    ) -> None:
        self.app = app
        self.tracing = tracing
        # Per partition: the latest trace context seen per state key since the last flush.
        self.trace_parents: dict[int, dict[StateKey, Context]] = {}
        self.topics = topics
        self.table = tables.rolling_state
        self.settings = settings
        self.metrics = metrics
        self.sink = sink
        self.plan = WindowPlan(settings.windows, round(settings.grace_s * 1000))
        # How long a source's idle report counts: at most the grace where it can (a source
        # whose reports stop is then held again before its live input could be late), and
        # long enough for reports every flush interval to overlap.
        self.idle_lease_ms = round(max(settings.grace_s, 3 * settings.flush_interval_s) * 1000)
        self.dedup_ttl_ms = round(settings.dedup_ttl_s * 1000)
        self.aggregates = AGGREGATE_KINDS[settings.aggregates]
        if issubclass(self.aggregates, Aggregate):
            self.aggregates = self.aggregates.capped(settings.max_observers_per_window)
        self.emit_changes = settings.emit in ("changes", "both")
        self.emit_finals = settings.emit in ("final", "both")
        self.keyed_topic = topics.keyed.get_topic_name()
        self.rolling_topic = topics.rolling.get_topic_name()
        self.anomaly_topic = topics.anomalies.get_topic_name()
        self.anomaly_config: AnomalyConfig | None = (
            AnomalyConfig(
                alpha=settings.anomaly_alpha,
                warmup=settings.anomaly_warmup,
                warning_z=settings.anomaly_warning_z,
                critical_z=settings.anomaly_critical_z,
                cooldown_ms=round(settings.anomaly_cooldown_s * 1000),
                history_ttl_ms=round(settings.history_ttl_s * 1000),
            )
            if settings.anomaly_detection
            else None
        )
        self.coordinator = Coordinator(topics, settings)
        self.partitions: dict[int, PartitionState] = {}
        self.last_changes: dict[int, float] = {}
        self.last_persist: dict[int, float] = {}
        self._chunk_ids = itertools.count()
        self._flush_locks: dict[int, asyncio.Lock] = {}
        # Per partition, since its last flush: who waits for it, and the input timestamps
        # of the observations it will make durable (for the latency histogram).
        self._waiters: dict[int, list[Callable[[], None]]] = {}
        self._unobserved: dict[int, list[int]] = {}
        # Whether the table holds the changelog of the current assignment: false from a
        # revocation until recovery has replayed it.
        self.table_ready = False
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_rebalance_complete.connect(self._on_recovered)

    def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: Iterable[TP] = args[0] if args else kwargs.get("revoked", ())
        partitions = {tp.partition for tp in revoked if tp.topic == self.keyed_topic}
        for partition in partitions:
            self.partitions.pop(partition, None)
            self.last_changes.pop(partition, None)
            self.last_persist.pop(partition, None)
            self._waiters.pop(partition, None)  # never durable here: not acknowledged
            self._unobserved.pop(partition, None)
        if partitions:
            self.table_ready = False  # until recovery has replayed the new assignment

    def _on_recovered(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        self.table_ready = True

    # -- state ------------------------------------------------------------------------

    def state_for(self, partition: int) -> PartitionState:
        """The partition's state, restored from the table on first use after assignment."""
        state = self.partitions.get(partition)
        if state is None:
            state = PartitionState(
                self.plan,
                self.dedup_ttl_ms,
                self.anomaly_config,
                self.aggregates,
                idle_lease_ms=self.idle_lease_ms,
                closing_changes=self.emit_changes,
                max_keys=self.settings.max_keys_per_partition,
                dedup_max_ids=self.settings.dedup_max_ids,
            )
            prefix = f"{partition}|".encode()
            items = [
                (key[len(prefix) :].decode(), value)
                for key, value in self.table.data.items()
                if key.startswith(prefix) and value is not None
            ]
            state.restore(items)
            self.partitions[partition] = state
            now = time.monotonic()
            self.last_changes[partition] = now
            logger.info(
                "partition_state_restored",
                partition=partition,
                keys=state.key_count,
                watermark=format_utc(from_epoch_ms(state.watermark)) if state.watermark else None,
            )
        return state

    def query(
        self, scope: str, entity: str, metric: str | None
    ) -> tuple[int, PartitionState | None]:
        """The partition of an entity and its state on this worker (None: not owned here)."""
        kafka_key = (entity if scope == "subject" else f"group:{entity}").encode()
        partition = key_partition(self.app, self.keyed_topic, kafka_key)
        owned = self.table_ready and partition in self.owned_partitions()
        return partition, (self.state_for(partition) if owned else None)

    @property
    def key_count(self) -> int:
        """Live (scope, entity, metric) keys over this worker's partitions."""
        return sum(state.key_count for state in self.partitions.values())

    @property
    def pane_count(self) -> int:
        """Live panes over this worker's partitions."""
        return sum(state.pane_count for state in self.partitions.values())

    # -- processing -------------------------------------------------------------------

    async def process(self, events: list[faust.EventT[bytes]]) -> None:
        """Fold a batch of keyed envelopes in, then persist and publish what it changed."""
        started = time.perf_counter()
        chunks: dict[int, list[Chunk]] = {}
        letters: list[Awaitable[None]] = []
        for event in events:
            message = event.message
            if message.value is None:
                logger.error(
                    "keyed_record_without_value", partition=message.partition, offset=message.offset
                )
                continue
            received_ms = int(message.timestamp * 1000)
            try:
                items, report = decode_envelope(message.value)
            except Exception as exc:  # not written by a worker: a dead letter, not a stop
                error = FieldError(field="", message=f"{type(exc).__name__}: {exc}"[:500])
                letters.append(await self.sink.send(message, DeadLetterReason.UNDECODABLE, [error]))
                continue
            chunk: Chunk = (items, received_ms, report)
            chunks.setdefault(message.partition, []).append(chunk)
        await asyncio.gather(*letters)
        refused = {
            partition
            for partition, partition_chunks in chunks.items()
            if not await self.fold(partition, partition_chunks)
        }
        for event in events:  # fetched again from the committed offset: not to be committed
            if event.message.partition in refused:
                never_commit(event.message)
        self.metrics.batch_seconds.labels(agent="rolling").observe(time.perf_counter() - started)

    async def fold(self, partition: int, chunks: list[Chunk], *, defer: bool = False) -> bool:
        """Offer keyed records (with their traceparents) to a partition's state, then flush
        it. False when nothing of them is durable here: the partition is not assigned here
        or its table not recovered yet, or it was revoked before its flush persisted. With
        `defer` the flush is left to the timer (every `INSIGHTS_FLUSH_INTERVAL`): one
        changelog write per key per interval instead of per batch; `when_durable` tells
        when it has happened.

        Under the partition's flush lock, so the state a flush persists never holds a
        change whose outputs that flush did not send (another task folding in while a
        flush waits for Kafka would break that).
        """
        async with self._flush_lock(partition):
            if not self.table_ready or partition not in self.owned_partitions():
                # Fetched before a rebalance (every rebalance seeks back to the committed
                # offsets: it is fetched again), and the partition is another worker's or
                # its table not recovered yet: folding it in here would corrupt the state.
                return False
            state = self.state_for(partition)
            tracing = self.tracing.enabled
            refused: list[tuple[KeyedObservation, Outcome | Exception]] = []
            sources_ms: list[int] = []
            duplicates = 0
            evicted = state.dedup_evicted
            now_ms = int(time.time() * 1000)
            for items, received_ms, report in chunks:
                for record, trace in items:
                    try:
                        outcome = state.offer(record, received_ms)
                    except Exception as exc:  # this record's content: it fails, not the batch
                        refused.append((record, exc))
                        continue
                    if outcome is Outcome.COUNTED:
                        sources_ms.append(record.source_timestamp_ms)
                        if tracing and trace is not None:
                            parent = Tracing.extract([("traceparent", trace.encode())])
                            if parent is not None:
                                key = (record.scope, record.entity, record.metric)
                                self.trace_parents.setdefault(partition, {})[key] = parent
                    elif outcome is Outcome.DUPLICATE:
                        duplicates += 1
                    else:
                        refused.append((record, outcome))
                if report is not None:  # after its records: they came before it
                    state.observe(report, now_ms)
            if duplicates:
                self.metrics.duplicates.inc(duplicates)
            if state.dedup_evicted > evicted:
                self.metrics.dedup_evicted.inc(state.dedup_evicted - evicted)
            self._report_failures(partition, state)
            # Delivered before anything of the fold can be acknowledged.
            await asyncio.gather(
                *[await self._dead_letter(partition, record, why, state) for record, why in refused]
            )
            self._unobserved.setdefault(partition, []).extend(sources_ms)
            if not defer:  # acknowledged when this returns: persisted now, whatever is due
                return await self._flush(partition, state, persist=True)
        return True

    async def observe(self, partition: int, report: SourceReport) -> bool:
        """A source's report for a partition of this worker, by the direct path (a control
        record otherwise). False when the partition's state is not here or not recovered:
        the caller reports it again later, never over the keyed topic."""
        async with self._flush_lock(partition):
            if not self.table_ready or partition not in self.owned_partitions():
                return False
            self.state_for(partition).observe(report, int(time.time() * 1000))
        return True

    def when_durable(self, partition: int, callback: Callable[[], None]) -> bool:
        """Call `callback` once the partition's next flush has persisted and published all
        that was folded in so far; False (and no call) if the partition is not assigned
        here. Callbacks of one partition are called in the order they were given."""
        if partition not in self.owned_partitions():
            return False
        self._waiters.setdefault(partition, []).append(callback)
        return True

    def _observe_latency(self, sources_ms: list[int]) -> None:
        """Input timestamp -> now, for a sample of the batch's counted events."""
        if not sources_ms:
            return
        now_ms = time.time() * 1000
        step = max(1, len(sources_ms) // _LATENCY_SAMPLES)
        for source_ms in sources_ms[::step]:
            self.metrics.latency.observe(max(0.0, (now_ms - source_ms) / 1000))

    async def tick(self) -> None:
        """Timer: load silent assigned partitions, close by wall clock those whose every
        source is idle (caught up and silent), and publish coalesced changes that are
        due. The partitions flush concurrently, so their round trips to Kafka overlap
        (each has its own lock and state)."""
        if not self._stable():
            return
        for partition in self.owned_partitions():
            self.state_for(partition)
        wall_ms = int(time.time() * 1000)
        await asyncio.gather(
            *(
                self.flush(
                    partition,
                    advance_to_ms=wall_ms if state.clock.all_idle(wall_ms) else None,
                )
                for partition, state in list(self.partitions.items())
            )
        )

    def _stable(self) -> bool:
        recovery: Any = getattr(self.app.tables, "recovery")  # noqa: B009  (untyped in Faust)
        return self.table_ready and not self.app.rebalancing and recovery.completed.is_set()

    def owned_partitions(self) -> set[int]:
        """Keyed-topic partitions in the consumer's assignment right now."""
        return owned_partitions(self.app, self.keyed_topic)

    def _flush_lock(self, partition: int) -> asyncio.Lock:
        lock = self._flush_locks.get(partition)
        if lock is None:
            lock = self._flush_locks[partition] = asyncio.Lock()
        return lock

    async def flush(self, partition: int, *, advance_to_ms: int | None = None) -> None:
        """Send finals, due changes, anomalies and the consensus of closed windows, wait
        until Kafka has them, then write the changed state to the changelog table.

        In that order: state that says "this window's final was sent" must never be in the
        changelog while the final is not in Kafka (a crash between the two would lose it);
        the other way round, a crash only repeats outputs (at-least-once). With
        `INSIGHTS_PERSIST_INTERVAL` a timer flush writes the changelog only when that is due,
        and what was folded in is acknowledged only once it is written. One flush per
        partition at a time (the timer and the agents both flush); `advance_to_ms` first
        moves the watermark of an idle partition to the wall clock. The state is looked up
        under the lock: one taken before it may have been replaced meanwhile (a rebalance
        drops it and the next fold restores a new one), and writing the old one would
        overwrite newer state in the changelog.
        """
        async with self._flush_lock(partition):
            state = self.partitions.get(partition)
            if state is None:
                return
            if advance_to_ms is not None:
                state.advance(advance_to_ms)
            await self._flush(partition, state)

    async def _flush(self, partition: int, state: PartitionState, *, persist: bool = False) -> bool:
        """False, and the partition's state dropped unpersisted, when it is not this
        worker's any more (before or while sending): the caller must not acknowledge what
        it folded in."""
        # Coalesced changes go out once per flush interval per partition (`_due`).
        now = time.monotonic()
        changes = _due(now - self.last_changes.get(partition, 0.0), self.settings.flush_interval_s)
        persist = persist or self._persist_due(partition, now)
        # Waiters are called once what they wait for is in the changelog: a flush that
        # does not persist leaves them (and the offsets they release) to the next one.
        waiters = self._waiters.pop(partition, []) if persist else []
        sources_ms = self._unobserved.pop(partition, [])
        if not self._holds(partition, state):
            self._drop_unpersisted(partition, state, "revoked before the flush")
            return False
        finals = state.take_finals()
        emitted_at = utc_now()
        # A key's trace parent waits for the next record sent for that key (changes may be
        # due only at a later flush than the batch that carried the trace).
        parents = self.trace_parents.get(partition, {}) if self.tracing.enabled else {}
        if changes:
            self.last_changes[partition] = now
        counts: Counter[str] = Counter()
        outgoing = self._outgoing(state, finals, changes, emitted_at, parents)
        # In slices: a flush of many keys (a backlog, a burst of new keys) holds one slice
        # of records and their futures at a time, not all of them.
        for piece in _slices(outgoing):
            await asyncio.gather(
                *await send_batched_caused_by(
                    self.app, piece, source_topic=self.keyed_topic, source_partition=partition
                )
            )
            counts.update(topic for topic, _, _, _ in piece)
            if not self._holds(partition, state):
                self._drop_unpersisted(partition, state, "revoked while sending")
                return False
        for topic, count in counts.items():
            self.metrics.records_emitted.labels(topic=topic).inc(count)
        if persist:
            await self._persist(partition, state)
            self.last_persist[partition] = now
            for waiter in waiters:
                waiter()
        self._report_failures(partition, state)
        self._observe_latency(sources_ms)  # published (and persisted, when due)
        return True

    def _persist_due(self, partition: int, now: float) -> bool:
        """Every flush persists, unless `INSIGHTS_PERSIST_INTERVAL` (at_least_once) spaces
        the changelog writes out: then once per interval (`_due`, as changes).
        The partitions' turns are spread over the interval (by partition number), so one
        flush does not write every partition's changes at once."""
        interval = self.settings.persist_interval_s
        if interval is None:
            return True
        last = self.last_persist.get(partition)
        if last is None:
            phase = (partition % _PERSIST_PHASES) / _PERSIST_PHASES
            last = self.last_persist[partition] = now - interval * phase
        return _due(now - last, interval)

    def _holds(self, partition: int, state: PartitionState) -> bool:
        """Whether `state` is still the partition's, and the partition still this worker's."""
        return partition in self.owned_partitions() and self.partitions.get(partition) is state

    def _drop_unpersisted(self, partition: int, state: PartitionState, reason: str) -> None:
        """Forget a partition's state whose latest changes were not persisted (its next
        owner, maybe this worker again, restores it from the changelog). A newer state
        object of the partition (restored since) is left alone."""
        if self.partitions.get(partition) is state:
            del self.partitions[partition]
        logger.warning("partition_state_dropped_unpersisted", partition=partition, reason=reason)

    def _outgoing(
        self,
        state: PartitionState,
        finals: list[Emission],
        changes: bool,
        emitted_at: datetime,
        parents: dict[StateKey, Context],
    ) -> Iterator[Outbound]:
        """The records of one flush, made as they are consumed: finals, due changes,
        anomalies, the consensus of the closed windows, then their observers' scores.
        A record for a key with a trace parent carries the headers that continue it."""
        rolling = self.rolling_topic
        # Before their finals; collected only when changes are emitted (`closing_changes`).
        for emission in state.take_closing_changes():
            if (record := self._render(state, emission, emitted_at)) is not None:
                yield rolling, *record, self._headers(rolling, parents.get(emission.key))
        for emission in finals:
            if (record := self._render(state, emission, emitted_at)) is None:
                continue
            state.record_final(
                emission.key, emission.window.spec.name, emission.window.end_ms, record[1]
            )
            if self.emit_finals:  # else kept only to answer queries for the latest finals
                yield rolling, *record, self._headers(rolling, parents.get(emission.key))
        if changes:
            sent: set[StateKey] = set()
            for emission in state.take_changes():  # consumed whole, even when not emitted
                if self.emit_changes:
                    if (record := self._render(state, emission, emitted_at)) is None:
                        continue
                    yield rolling, *record, self._headers(rolling, parents.get(emission.key))
                    if parents:
                        sent.add(emission.key)
            for state_key in sent:
                parents.pop(state_key, None)
        for detection in state.take_anomalies():
            key, value = anomaly_record(detection, emitted_at)
            parent = parents.get(("subject", detection.subject_id, detection.metric))
            self.metrics.anomalies.labels(severity=detection.severity).inc()
            yield self.anomaly_topic, key, value, self._headers(self.anomaly_topic, parent)
        scores: dict[str, list[ScoreRow]] = {}
        for emission in finals:
            parents.pop(emission.key, None)
            consensus = self.coordinator.judge(emission, emitted_at, scores)
            if consensus is not None:
                yield consensus
        yield from self.coordinator.score_records(scores)

    def _render(
        self, state: PartitionState, emission: Emission, emitted_at: datetime
    ) -> tuple[bytes, bytes] | None:
        """The (key, value) of a window record; None, and the failure kept for
        `_report_failures`, when its content cannot be rendered (that record is skipped)."""
        try:
            return insight_record(emission, emitted_at)
        except Exception as exc:
            state.failed("render", emission.key, exc)
            return None

    async def _persist(self, partition: int, state: PartitionState) -> None:
        """Write the state the flush changed; return once the changelog has it."""
        writes, _ = state.take_persist(f"{time.time_ns()}-{next(self._chunk_ids)}")
        if not writes:
            return
        prefix = f"{partition}|"
        for piece in _slices(writes.items()):
            changed = {(prefix + name).encode(): value for name, value in piece}
            await asyncio.gather(
                *await write_table(self.app, self.table, self.keyed_topic, partition, changed)
            )

    def _headers(self, topic: str, parent: Context | None) -> list[tuple[str, bytes]] | None:
        """The headers of a record caused by traced input: the `traceparent` of a producer
        span that continues `parent` (None: no parent, no headers)."""
        if parent is None:
            return None
        name = (
            "insights.rolling publish"
            if topic == self.rolling_topic
            else "insights.anomalies publish"
        )
        with self.tracing.span(
            name, parent=parent, kind=SpanKind.PRODUCER, topic=topic, operation="publish"
        ):
            return current_headers()

    async def _dead_letter(
        self,
        partition: int,
        record: KeyedObservation,
        why: Outcome | Exception,
        state: PartitionState,
    ) -> Awaitable[None]:
        """The dead letter of a folded record refused as late or over capacity, or whose
        folding raised (`unprocessable`: the exception's type and message, not the value)."""
        if why is Outcome.LATE:
            self.metrics.late.inc()
            reason = DeadLetterReason.LATE
            when = format_utc(from_epoch_ms(state.watermark or 0))
            error = FieldError(
                field="observed_at",
                message=f"every {record.scope} window holding observed_at has closed: the "
                f"watermark is {when}, grace {self.settings.grace_s:g}s",
            )
        elif why is Outcome.OVER_CAPACITY:
            self.metrics.over_capacity.labels(partition=str(partition)).inc()
            reason = DeadLetterReason.OVER_CAPACITY
            budget = self.settings.max_keys_per_partition
            error = FieldError(
                field="subject_id" if record.scope == "subject" else "group_id",
                message=f"a new {record.scope} key beyond the key budget of its partition "
                f"({partition}): INSIGHTS_MAX_KEYS_PER_PARTITION={budget} keys with open windows",
            )
        else:
            self.metrics.unprocessable.labels(stage="fold").inc()
            logger.error(
                "record_unprocessable",
                stage="fold",
                partition=partition,
                source_partition=record.source_partition,
                source_offset=record.source_offset,
                error_type=type(why).__name__,
            )
            reason = DeadLetterReason.UNPROCESSABLE
            error = FieldError(field="", message=f"{type(why).__name__}: {why}"[:500])
        try:
            value: bytes | None = dumps(record.to_observation())
        except Exception as exc:  # the observation as read is in the input topic
            value = None
            error = FieldError(field="", message=f"{error.message}; not rendered: {exc!r}"[:500])
        return await self.sink.send_record(
            source=(self.keyed_topic, partition),
            topic=self.settings.input_topic,
            partition=record.source_partition,
            offset=record.source_offset,
            key=record.subject_id.encode("utf-8", "backslashreplace"),
            value=value,
            reason=reason,
            errors=[error],
            event_id=record.event_id,
        )

    def _report_failures(self, partition: int, state: PartitionState) -> None:
        """Log and count the windows a partition's state could not summarise or persist."""
        for stage, (scope, entity, metric), exc in state.take_failures():
            self.metrics.unprocessable.labels(stage=stage).inc()
            logger.error(
                "window_unprocessable",
                stage=stage,
                partition=partition,
                scope=scope,
                entity=entity,
                metric=metric,
                error_type=type(exc).__name__,
                error=str(exc)[:300],
            )


def _due(elapsed_s: float, interval_s: float) -> bool:
    """Whether periodic work is due: from 3/4 of its interval, so a timer tick that comes a
    little early does not hold it a whole interval more."""
    return elapsed_s >= interval_s * _DUE_FRACTION


def _slices(items: Iterable[_T]) -> Iterator[list[_T]]:
    """`items` in lists of up to `_SEND_SLICE`, taken lazily: what a flush holds at once."""
    iterator = iter(items)
    while piece := list(itertools.islice(iterator, _SEND_SLICE)):
        yield piece


def attach_rolling(
    app: faust.App,
    topics: Topics,
    tables: Tables,
    settings: Settings,
    metrics: Metrics,
    sink: DeadLetterSink,
    tracing: Tracing,
) -> RollingEngine:
    """Register the rolling agent and its timer."""
    engine = RollingEngine(app, topics, tables, settings, metrics, sink, tracing)

    @app.agent(topics.keyed, name="rolling")
    async def rolling(stream: faust.StreamT[bytes]) -> None:
        await consume_batches(
            app, stream, engine.process, batch_max=BATCH_MAX, within_s=BATCH_WAIT_S
        )

    @app.timer(interval=settings.flush_interval_s)  # type: ignore[untyped-decorator]
    async def rolling_tick() -> None:
        async with commit_gate(app).work():  # a transaction holds a whole flush
            await engine.tick()

    return engine

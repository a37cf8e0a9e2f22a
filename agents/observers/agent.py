"""The observer agent: per-window standings keyed by observer -> drift figures in a
changelog-backed table -> `kind: observer` records on insights.observers."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import faust
import structlog

from agents.batching import consume_batches
from agents.observers.book import ObserverBook, ObserverStatus, decode_scores
from models import ObserverRecord, dumps, from_epoch_ms, utc_now
from streams.faust.consumer_state import owned_partitions
from streams.faust.sends import Outbound, send_batched_caused_by
from streams.faust.table_writes import write_table
from streams.runtime.metrics import Metrics
from streams.runtime.settings import Settings
from streams.runtime.tables import Tables
from streams.runtime.topics import Topics

__all__ = ["ObserverEngine", "attach_observers"]

logger = structlog.get_logger(__name__)

BATCH_MAX: Final = 2000
BATCH_WAIT_S: Final = 0.1


class ObserverEngine:
    """Per-partition observer books, loaded lazily from the table."""

    def __init__(
        self, app: faust.App, topics: Topics, tables: Tables, settings: Settings, metrics: Metrics
    ) -> None:
        self.app = app
        self.table = tables.observer_state
        self.scores_topic = topics.scores.get_topic_name()
        self.observer_topic = topics.observers.get_topic_name()
        self.settings = settings
        self.metrics = metrics
        self.books: dict[int, ObserverBook] = {}
        app.on_partitions_revoked.connect(self._on_revoked)

    def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        for tp in revoked:
            if tp.topic == self.scores_topic:
                self.books.pop(tp.partition, None)

    def book_for(self, partition: int) -> ObserverBook:
        book = self.books.get(partition)
        if book is None:
            book = ObserverBook(
                self.settings.drift_alpha,
                self.settings.stale_windows,
                round(self.settings.history_ttl_s * 1000),
            )
            prefix = f"{partition}|".encode()
            for key, value in self.table.data.items():
                if key.startswith(prefix) and value is not None:
                    book.restore(key[len(prefix) :].decode(), value)
            self.books[partition] = book
        return book

    async def process(self, events: list[faust.EventT[bytes]]) -> None:
        started = time.perf_counter()
        touched: dict[int, ObserverBook] = {}
        owned = owned_partitions(self.app, self.scores_topic)
        for event in events:
            message = event.message
            if message.value is None or message.partition not in owned:
                continue  # a revoked partition's batch is the new owner's to replay
            book = touched.get(message.partition)
            if book is None:
                book = touched[message.partition] = self.book_for(message.partition)
            for score in decode_scores(message.value):
                book.score(score)
        emitted_at = utc_now()
        for partition, book in touched.items():
            book.mark_stale()
            expired = book.take_expired()
            changed = book.take_changed()
            # Records first, then the state that presumes them (see RollingEngine.flush).
            records: list[Outbound] = [
                (
                    self.observer_topic,
                    observer_id.encode(),
                    dumps(observer_record(observer_id, status, emitted_at)),
                    None,
                )
                for observer_id, status in changed.items()
            ]
            await asyncio.gather(
                *await send_batched_caused_by(
                    self.app,
                    records,
                    source_topic=self.scores_topic,
                    source_partition=partition,
                )
            )
            writes: dict[bytes, bytes | None] = {
                f"{partition}|{observer_id}".encode(): status.to_bytes()
                for observer_id, status in changed.items()
            }
            writes.update((f"{partition}|{observer_id}".encode(), None) for observer_id in expired)
            await asyncio.gather(
                *await write_table(self.app, self.table, self.scores_topic, partition, writes)
            )
            self.metrics.records_emitted.labels(topic=self.observer_topic).inc(len(changed))
        self.metrics.batch_seconds.labels(agent="observers").observe(time.perf_counter() - started)


def observer_record(observer_id: str, status: ObserverStatus, emitted_at: Any) -> ObserverRecord:
    """The `kind: observer` record of one observer's figures."""
    return ObserverRecord(
        observer_id=observer_id,
        windows_scored=status.windows_scored,
        outlier_windows=status.outlier_windows,
        drift_score=status.drift_score,
        stale=status.stale,
        last_seen=from_epoch_ms(status.last_seen_ms),
        emitted_at=emitted_at,
    )


def attach_observers(
    app: faust.App, topics: Topics, tables: Tables, settings: Settings, metrics: Metrics
) -> ObserverEngine:
    """Register the observer agent."""
    engine = ObserverEngine(app, topics, tables, settings, metrics)

    @app.agent(topics.scores, name="observers")
    async def observers(stream: faust.StreamT[bytes]) -> None:
        await consume_batches(
            app, stream, engine.process, batch_max=BATCH_MAX, within_s=BATCH_WAIT_S
        )

    return engine

"""The batch lane: records of some topics handed over a fetched batch per partition, not one
message at a time through Faust's conductor, channels, events and streams.

Faust's per-message path is what bounds a process's throughput (docs/architecture.md, Ingest).
The consumer group, its assignment, the pauses of a rebalance and the commits stay Faust's.
`LaneConsumer`, a subclass of Faust's aiokafka `Consumer` (registered by `transport`):

1. `_getmany` takes the lane topics' records out of the fetched map, per partition, while the
   flow is active and the partition is active, and puts them in the app's `BatchLane`; Faust
   then sees only the other topics' records. (When the flow is not active, Faust's `getmany`
   seeks every partition back to its committed offset and drops the fetch: the lane's records
   are left in it for that.) It runs outside `rebalance.PausedAssignmentConsumer._getmany`:
   the fetch is made with the snapshot of the active partitions, and the lane checks the live
   set after it.
2. `_new_offset`: the offset committed for a lane partition is the lane's, the one after the
   last record of its last processed batch; `_filter_tps_with_pending_acks` lists lane
   partitions too (Faust lists only partitions with acknowledged messages, which lane
   partitions never have).
3. `on_partitions_revoked`: the lane forgets the revoked partitions' offsets, like Faust's own
   bookkeeping.

Upstream: no upstream issue found. The change that would remove it: a per-topic "deliver
fetched batches" option (a batch callback beside the per-message conductor callback) with
batch acknowledgements. Pinned by tests/unit/test_batch_lane.py.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from typing import Any, cast

import faust
import structlog
from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.transports import TPorTopicSet

__all__ = ["BatchLane", "LaneConsumer", "batch_lane"]

logger = structlog.get_logger(__name__)


class BatchLane:
    """A queue of fetched partition batches of `topics`, and each partition's committable
    offset: the one after the last record of its last processed batch."""

    def __init__(self, app: faust.App, topics: set[str], *, max_batches: int = 4) -> None:
        self.app = app
        self.topics = topics
        self.max_batches = max_batches
        self._queue: asyncio.Queue[tuple[Any, list[Any], int]] | None = None
        self._next: dict[Any, int] = {}  # partition -> offset after its last processed record
        self._fetched: dict[Any, int] = {}  # partition -> offset after its last record queued
        self._processing: dict[Any, int] = {}  # partition -> generation of its batch in work
        self._spoiled: set[tuple[Any, int]] = set()  # (partition, generation) given up

    def _batches(self) -> asyncio.Queue[tuple[Any, list[Any], int]]:
        if self._queue is None:  # created in the running loop
            self._queue = asyncio.Queue(self.max_batches)
        return self._queue

    async def put(self, tp: Any, records: list[Any]) -> None:
        """From the fetcher: a partition's fetched records (waits while the lane is full)."""
        self._fetched[tp] = records[-1].offset + 1
        await self._batches().put((tp, records, self.app.consumer_generation_id))

    def fetched(self, tp: Any) -> int | None:
        """The offset after the last record of `tp` handed to the lane (None: none yet)."""
        return self._fetched.get(tp)

    async def take(self) -> tuple[Any, list[Any], int]:
        """The next batch: (partition, records, the consumer generation it was fetched in).
        Process it only while `current`: a rebalance seeks every partition back to its
        committed offset, so a batch of an older generation is fetched again."""
        return await self._batches().get()

    def current(self, tp: Any, generation: int) -> bool:
        """Whether a batch fetched in `generation` may still be processed: only then is
        dropping it safe, as every rebalance seeks back to the committed offsets. (A batch
        fetched after a rebalance's seek, while Faust still says "rebalancing", must be
        processed: the consumer's position is already past it.)"""
        app: Any = self.app
        return (
            generation == app.consumer_generation_id
            and tp in app.consumer.assignment()
            and (tp, generation) not in self._spoiled
        )

    def processing(self, tp: Any, generation: int) -> None:
        """A batch of `tp` fetched in `generation` is being processed."""
        self._processing[tp] = generation
        if self._spoiled:  # given up in generations before: nothing of them comes any more
            self._spoiled = {(t, g) for t, g in self._spoiled if g >= generation}

    def spoil(self, topic: str, partition: int) -> None:
        """Give up the partition's batch in work, and every later one of its generation:
        none of them is processed or marked committable. Only while a rebalance is under
        way, whose seek to the committed offsets brings them back."""
        tp = next(
            (tp for tp in self._processing if tp.topic == topic and tp.partition == partition), None
        )
        if tp is not None:
            self._spoiled.add((tp, self._processing[tp]))
            logger.info("lane_batch_given_up", topic=topic, partition=partition)

    def done(self, tp: Any, records: list[Any]) -> None:
        """A batch is processed: its offsets may be committed."""
        self._next[tp] = records[-1].offset + 1

    def committable(self, tp: Any) -> int | None:
        """The offset to commit for `tp` (None: nothing processed since its assignment)."""
        return self._next.get(tp)

    def processed(self) -> list[Any]:
        """Partitions with a processed batch (their offsets may be due for a commit)."""
        return list(self._next)

    def forget(self, tps: Any) -> None:
        """The partitions were revoked: their offsets are no longer ours to commit."""
        for tp in tps:
            self._next.pop(tp, None)
            self._fetched.pop(tp, None)


_lanes: weakref.WeakKeyDictionary[Any, BatchLane] = weakref.WeakKeyDictionary()
"""The lane of each app (weakly keyed: it lives as long as its app)."""


def batch_lane(app: faust.App, topics: set[str]) -> BatchLane:
    """Register (once per app) the lane for `topics`; `LaneConsumer` hands their records to it."""
    lane = _lanes.get(app)
    if lane is None:
        lane = _lanes[app] = BatchLane(app, topics)
    return lane


class LaneConsumer(faust_aiokafka.Consumer):
    """Faust's consumer handing records of its app's lane topics to the lane, and committing
    the lane's offsets (fixes 1-3)."""

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> RecordMap:  # noqa: ASYNC109
        records: Any = await super()._getmany(active_partitions, timeout)  # a new dict
        lane = _lanes.get(self.app)
        if not records or lane is None or not self.flow_active:
            return cast(RecordMap, records)
        for tp in [tp for tp in records if tp.topic in lane.topics]:
            batch = records.pop(tp)
            if batch and (active_partitions is None or tp in active_partitions):
                await lane.put(tp, batch)
        return cast(RecordMap, records)

    def _new_offset(self, tp: TP) -> int | None:
        lane = _lanes.get(self.app)
        if lane is not None and tp.topic in lane.topics:
            return lane.committable(tp)
        return super()._new_offset(tp)

    def _filter_tps_with_pending_acks(self, topics: TPorTopicSet | None = None) -> Iterator[TP]:
        yield from super()._filter_tps_with_pending_acks(topics)
        lane = _lanes.get(self.app)
        if lane is not None:
            for tp in lane.processed():
                if tp not in self._acked and (topics is None or tp in topics or tp.topic in topics):
                    yield tp

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        lane = _lanes.get(self.app)
        if lane is not None:
            lane.forget(revoked)
        await super().on_partitions_revoked(revoked)

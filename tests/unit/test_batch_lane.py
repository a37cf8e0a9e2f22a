"""The batch lane: fetched records of the lane's topics go to the lane a partition batch at
a time, the rest to Faust; the lane's offsets are the ones Faust commits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from agents.batching import consume_lane
from streams.faust.batch_lane import LaneConsumer, batch_lane
from streams.faust.transport import Consumer


class _App:
    """What the lane reads of an app (weak-referenceable, unlike SimpleNamespace)."""

    def __init__(self, assignment: set[Any]) -> None:
        self.consumer_generation_id = 1
        self.rebalancing = False
        self.in_transaction = False
        self.consumer = SimpleNamespace(assignment=lambda: assignment)


def _records(topic: str, partition: int, offsets: range) -> list[ConsumerRecord[Any, Any]]:
    return [
        ConsumerRecord(
            topic=topic,
            partition=partition,
            offset=o,
            timestamp=0,
            timestamp_type=0,
            key=None,
            value=b"v",
            checksum=None,
            serialized_key_size=0,
            serialized_value_size=1,
            headers=(),
        )
        for o in offsets
    ]


def _driver_consumer(app: Any, fetched: dict[Any, Any], *, flow_active: bool = True) -> Any:
    """The app's consumer class (the lane outside the rebalance fix's fetch), over a fake
    consumer thread."""
    consumer: Any = Consumer.__new__(Consumer)

    async def getmany(active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109
        return dict(fetched)

    consumer.__dict__.update(
        app=app, flow_active=flow_active, _thread=SimpleNamespace(getmany=getmany)
    )
    return consumer


async def test_the_fetch_hands_lane_topics_to_the_lane_and_the_rest_to_faust() -> None:
    inputs0, inputs1, keyed0 = (
        TopicPartition("in", 0),
        TopicPartition("in", 1),
        TopicPartition("keyed", 0),
    )
    app = _App({inputs0, inputs1, keyed0})
    lane = batch_lane(app, {"in"})  # type: ignore[arg-type]
    fetched = {
        inputs0: _records("in", 0, range(0, 3)),
        inputs1: _records("in", 1, range(5, 7)),  # not active: paused
        keyed0: _records("keyed", 0, range(0, 2)),
    }
    consumer = _driver_consumer(app, fetched)
    left = await consumer._getmany({inputs0, keyed0}, 1.0)
    assert list(left) == [keyed0]
    tp, records, generation = await lane.take()
    assert (tp, [r.offset for r in records], generation) == (inputs0, [0, 1, 2], 1)
    assert lane._batches().empty()  # the paused partition's records were not taken

    # The flow stopped (a rebalance began): Faust seeks back and drops the fetch itself.
    stopped = _driver_consumer(app, fetched, flow_active=False)
    assert set(await stopped._getmany({inputs0, keyed0}, 1.0)) == set(fetched)
    assert lane._batches().empty()


async def test_the_committed_offset_of_a_lane_partition_follows_processed_batches() -> None:
    inputs0 = TopicPartition("in", 0)
    app = _App({inputs0})
    lane = batch_lane(app, {"in"})  # type: ignore[arg-type]
    keyed0 = TopicPartition("keyed", 0)
    consumer: Any = LaneConsumer.__new__(LaneConsumer)
    consumer.__dict__.update(app=app, _acked={keyed0: [3]})
    assert consumer._new_offset(inputs0) is None
    assert list(consumer._filter_tps_with_pending_acks()) == [keyed0]
    lane.done(inputs0, _records("in", 0, range(10, 14)))
    assert consumer._new_offset(inputs0) == 14
    # The commit considers the lane partition too (Faust lists only acknowledged ones).
    assert list(consumer._filter_tps_with_pending_acks()) == [keyed0, inputs0]
    assert list(consumer._filter_tps_with_pending_acks({"keyed"})) == [keyed0]
    lane.forget({inputs0})  # revoked
    assert consumer._new_offset(inputs0) is None


async def test_the_lane_agent_processes_current_batches_and_drops_older_ones() -> None:
    inputs0, inputs1 = TopicPartition("in", 0), TopicPartition("in", 1)
    app = _App({inputs0})
    lane = batch_lane(app, {"in"})  # type: ignore[arg-type]
    processed: list[list[int]] = []
    all_done = asyncio.Event()
    deferred: list[Callable[[], None]] = []

    async def process(records: list[Any], done: Callable[[], None]) -> None:
        processed.append([r.offset for r in records])
        if len(processed) == 1:
            done()  # durable at once
        else:
            deferred.append(done)  # durable at a later flush
            all_done.set()

    await lane.put(inputs0, _records("in", 0, range(0, 2)))
    await lane.put(inputs1, _records("in", 1, range(0, 2)))  # not assigned here
    app.consumer_generation_id = 2  # a rebalance happened: the first two are stale
    await lane.put(inputs0, _records("in", 0, range(0, 3)))
    await lane.put(inputs0, _records("in", 0, range(3, 5)))
    agent = asyncio.create_task(consume_lane(app, lane, process))  # type: ignore[arg-type]
    await asyncio.wait_for(all_done.wait(), timeout=5)
    agent.cancel()
    assert processed == [[0, 1, 2], [3, 4]]
    assert lane.committable(inputs0) == 3  # the second batch is not durable yet
    deferred.pop()()
    assert lane.committable(inputs0) == 5
    assert lane.committable(inputs1) is None


async def test_a_spoiled_partition_marks_nothing_more_in_its_generation() -> None:
    """A batch given up (its direct fold refused in a rebalance) and every later batch of its
    partition in that generation are neither processed nor committable: the rebalance's seek
    to the committed offsets brings them back; the next generation goes on as usual."""
    tp, other = TopicPartition("in", 0), TopicPartition("in", 1)
    app = _App({tp, other})
    lane = batch_lane(app, {"in"})  # type: ignore[arg-type]
    first, later = _records("in", 0, range(0, 3)), _records("in", 0, range(3, 6))
    await lane.put(tp, first)
    assert lane.fetched(tp) == 3
    lane.processing(tp, 1)
    lane.spoil("in", 0)
    assert not lane.current(tp, 1)
    assert lane.current(other, 1)  # only that partition
    await lane.put(tp, later)
    assert lane.fetched(tp) == 6
    assert lane.committable(tp) is None
    app.consumer_generation_id = 2
    lane.processing(tp, 2)
    assert lane.current(tp, 2)

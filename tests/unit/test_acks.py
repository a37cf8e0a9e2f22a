"""Which acknowledgements count towards commits (AckConsumer, consume_batches)."""

from __future__ import annotations

import inspect
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP, Message

from agents.batching import consume_batches
from streams.faust.acks import AckConsumer, _ReadOffsets, acking_processed, never_commit

KEYED = TP("app-observations-by-subject", 4)


def _message(offset: int, generation: int = 3) -> Message:
    return Message(
        KEYED.topic, KEYED.partition, offset, 0.0, 0, None, None, b"v", None,
        tp=KEYED, generation_id=generation,
    )  # fmt: skip


def _consumer(generation: int = 3, cls: type[Any] = AckConsumer) -> Any:
    """A `cls` consumer with only what `ack` reads."""
    consumer: Any = cls.__new__(cls)
    consumer.__dict__.update(
        app=SimpleNamespace(
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
            consumer_generation_id=generation,
        ),
        _committed_offset=defaultdict(lambda: None),
        _acked=defaultdict(list),
        _acked_index=defaultdict(set),
        _unacked_messages=set(),
        _n_acked=0,
        _waiting_for_ack=None,
    )
    return consumer


def test_only_acknowledgements_of_processed_events_record_their_offsets() -> None:
    consumer = _consumer()
    dropped, processed = _message(1), _message(2)
    consumer._unacked_messages.update({dropped, processed})
    # Faust's stream acknowledges a message it drops (flow stopped, older generation).
    assert consumer.ack(dropped) is False
    assert dropped.acked and dropped not in consumer._unacked_messages
    with acking_processed():
        assert consumer.ack(processed) is True
        assert consumer.ack(processed) is False  # once
    assert consumer._acked[KEYED] == [2]
    assert consumer._unacked_messages == set()


def test_the_consumer_commits_no_offset_of_a_message_marked_never_commit() -> None:
    # `never_commit` relies on Faust's Consumer.ack skipping a message already marked
    # acknowledged.
    consumer = _consumer(cls=FaustConsumer)
    refused, kept = _message(5), _message(6)
    never_commit(refused)
    with acking_processed():  # as the agents acknowledge
        assert consumer.ack(refused) is False
        assert consumer.ack(kept) is True
    assert consumer._acked[KEYED] == [6]


def test_a_read_offset_of_0_reports_the_offsets_skipped_after_it() -> None:
    # Faust records skipped offsets only `if gap > 1 and r_offset:`; the fix makes a read
    # offset of 0 true, and leaves "nothing read" (None) and other offsets as they were.
    import faust.transport.consumer as consumer_module

    source = inspect.getsource(consumer_module)
    assert "if gap > 1 and r_offset:" in source
    assert "get_read_offset = self._read_offset.__getitem__" in source
    offsets = _ReadOffsets(lambda: None)
    offsets.update({TP("t", 0): 0, TP("t", 1): 7})
    zero = offsets[TP("t", 0)]
    assert zero == 0 and bool(zero) and 4 - (zero or 0) == 4
    assert offsets[TP("t", 1)] == 7
    assert offsets[TP("t", 2)] is None


async def test_the_batch_loop_processes_the_current_generation_and_counts_its_acks() -> None:
    consumer = _consumer(generation=3)
    stale, fresh = _message(5, generation=2), _message(6, generation=3)
    events = [SimpleNamespace(message=stale), SimpleNamespace(message=fresh)]

    class Stream:
        def take_events(self, n: int, within: float) -> Any:
            async def batches() -> Any:
                yield events

            return batches()

        async def ack(self, event: Any) -> bool:
            return bool(consumer.ack(event.message))

    class App:  # weakly referenced by its commit gate
        consumer_generation_id = 3

    app: Any = App()
    app.consumer = consumer
    processed: list[list[int]] = []

    async def process(batch: list[Any]) -> None:
        processed.append([event.message.offset for event in batch])

    await consume_batches(app, Stream(), process, batch_max=10, within_s=0.1)  # type: ignore[arg-type]
    assert processed == [[6]]
    assert stale.acked  # never committed: fetched again after the rebalance's seek
    assert consumer._acked[KEYED] == [6]

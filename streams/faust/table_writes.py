"""Table writes outside stream iteration, whose changelog deliveries the caller can await.

Changes no Faust method; these replace `table[key] = value` for the agents:

1. `writing_partition`: Faust routes a table write to a changelog partition through
   `faust.streams._current_event`, so a write with no current event raises "Cannot modify
   table key from outside of stream iteration" (a RocksDB store also picks its database by
   it). The agents write from a `take_events()` batch body and from the idle timer, where no
   event is current; this makes a stand-in event of the right partition current meanwhile.
2. `write_table`: `Table.on_key_set` queues the changelog record (`send_soon`) and drops its
   future, and the at-least-once commit drains that queue with `ProducerBuffer.flush_atmost`,
   which gives up after 0.1 s without a send: an offset could be committed while the state it
   covers was still queued in memory, and a kill -9 lost that state. This does what
   `Table.on_key_set`/`on_key_del` do (our tables have no TTL), sends the records in batches
   (`sends.send_batched_caused_by`) and returns the futures, to be awaited before the work is
   acknowledged; as `Table._on_changelog_sent` does, a delivered batch's last offset becomes the
   store's persisted offset (RocksDB resumes recovery there).

Upstream: faust-streaming/faust#497 (open) and #300 (closed) ask for table writes in
`take()` batches; faust-streaming/faust#273 (merged) added the flush before a commit whose
0.1 s bound remains. The changes that would remove them: `table.set(key, value, partition=p)`
returning the changelog future. Pinned by tests/unit/test_faust_pitfalls.py (routing, the
flush bound), tests/unit/test_batched_send.py and tests/unit/test_right_sized.py.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Awaitable, Iterator, Mapping
from typing import Any

import faust
from faust import streams as faust_streams
from faust.events import Event
from faust.types import TP, Message

from models.codec import right_sized
from streams.faust.sends import Outbound, send_batched_caused_by

__all__ = ["write_table", "writing_partition"]


@contextlib.contextmanager
def writing_partition(app: faust.App, topic: str, partition: int) -> Iterator[None]:
    """Within this block, table writes go to changelog partition `partition`."""
    message = Message(
        topic=topic,
        partition=partition,
        offset=-1,
        timestamp=0.0,
        timestamp_type=0,
        headers=None,
        key=None,
        value=None,
        checksum=None,
    )
    event: Any = Event(app, None, None, None, message)
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


async def write_table(
    app: faust.App,
    table: Any,
    topic: str,
    partition: int,
    writes: Mapping[bytes, bytes | None],
) -> list[Awaitable[Any]]:
    """Apply `writes` (None deletes) to `table` on changelog partition `partition`, caused by
    work on `topic`/`partition`; return the changelog deliveries, to be awaited before the
    work they record is acknowledged."""
    changelog = table.changelog_topic.get_topic_name()
    records: list[Outbound] = []
    with writing_partition(app, topic, partition):  # a RocksDB store picks its DB by it
        for key, value in writes.items():
            if value is None:
                if key not in table.data:
                    continue
                del table.data[key]
            else:
                value = right_sized(value)  # kept in the table for as long as the key lives
                table.data[key] = value
            records.append((changelog, key, value, None))

    def persisted(sent: Any, count: int) -> None:
        tp = TP(sent.topic, sent.partition)
        if app.in_transaction:  # on disk once the transaction commits
            app.tables.persist_offset_on_commit(table.data, tp, sent.offset + count - 1)
        else:
            table.data.set_persisted_offset(tp, sent.offset + count - 1)

    return await send_batched_caused_by(
        app,
        records,
        source_topic=topic,
        source_partition=partition,
        partition=partition,
        on_sent=persisted,
    )

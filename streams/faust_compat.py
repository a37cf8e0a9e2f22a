"""The one place that reaches into a Faust internal (pinned: faust-streaming 0.15.x).

Faust routes a table write to a changelog partition through `faust.streams._current_event`,
so writing a table outside stream iteration raises "Cannot modify table key from outside of
stream iteration" (and RocksDB stores assert). Our agents write tables from a
`take_events()` batch body and from the idle timer, where no event is current. This context
manager makes a stand-in event of the right partition current for the duration of the
writes. Upstream change that would remove it: a public `table.set(key, value, partition=p)`
(or `with table.partition(p):`) API.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Iterator
from typing import Any

import faust
from faust import streams as _faust_streams
from faust.events import Event
from faust.types import Message

__all__ = [
    "committed_offset",
    "install_fetch_fast_path",
    "key_partition",
    "owned_partitions",
    "send_caused_by",
    "writing_partition",
]


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
    token = _faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _faust_streams._current_event.reset(token)


async def send_caused_by(
    app: faust.App,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    *,
    source_topic: str,
    source_partition: int,
    headers: list[tuple[str, bytes]] | None = None,
    partition: int | None = None,
) -> Awaitable[Any]:
    """Send a record caused by processing `source_topic`/`source_partition`; returns the
    delivery future (await it to know the record is in Kafka).

    Under `exactly_once` the record goes through that source partition's transactional
    producer, so it commits or aborts together with the source offsets and the changelog
    writes of the same work. (Faust's own routing picks the producer by the *destination*
    partition, and only for topics the app consumes: outputs to other topics would leave
    the transaction, and a destination partition owned by another worker has no producer
    here.) Transactional ids follow Faust's `{app id}-{topic group}-{partition}`.
    Upstream change that would remove it: `topic.send(..., transactional_id=...)` or a
    "send for the current event's partition" option.
    """
    if app.in_transaction:
        manager: Any = app.consumer.transactions
        group = app.assignor.group_for_topic(source_topic)
        transactional_id = f"{app.conf.id}-{group}-{source_partition}"
        delivery: Awaitable[Any] = await manager.producer.send(
            topic, key, value, partition, None, headers, transactional_id=transactional_id
        )
        return delivery
    delivery = await app.producer.send(topic, key, value, partition, None, headers)
    return delivery


def owned_partitions(app: faust.App, topic: str) -> set[int]:
    """Partitions of `topic` in this worker's consumer assignment right now."""
    return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}


def key_partition(app: faust.App, topic: str, key: bytes) -> int:
    """The partition the producer's default partitioner picks for `key` (murmur2)."""
    producer: Any = app.producer
    return int(producer.key_partition(topic, key).partition)


def committed_offset(app: faust.App, tp: Any) -> int | None:
    """The offset this worker last committed for `tp` (Faust keeps it privately)."""
    committed: Any = getattr(app.consumer, "_committed_offset", {})
    value = committed.get(tp)
    return int(value) if value is not None else None


_FAST_PATH_INSTALLED = False


def install_fetch_fast_path() -> bool:
    """Make Faust's fetch loop hand a message to the conductor without four tasks.

    `Consumer._drain_messages` delivers every fetched message with
    `await self.wait_first(callback(message), self.suspend_flow.wait())`, and mode's
    `wait_first` wraps each awaitable (plus the service's stopped/crashed events) in a task
    and an `asyncio.wait` — about half of a worker's CPU per message (measured: 311 -> 153 µs
    per event). While the flow is not suspended and the consumer neither stopped nor
    crashed, the callback is awaited directly; otherwise the original path runs (a stop
    still cancels the fetcher task). Only the transport Consumer is patched, whose one
    `wait_first` call is that one (a unit test pins the call's shape). Upstream change that
    would remove it: a direct `await callback(message)` in `_drain_messages` when the flow
    is running. Returns False (and changes nothing) on another Faust version.
    """
    global _FAST_PATH_INSTALLED
    if _FAST_PATH_INSTALLED:
        return True
    if not faust.__version__.startswith("0.15."):
        return False
    from faust.transport.consumer import Consumer as TransportConsumer
    from mode.services import WaitResults

    original = TransportConsumer.wait_first

    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109  (mode's signature)
        if (
            len(coros) == 2
            and timeout is None
            and not self.suspend_flow.is_set()
            and not self._stopped.is_set()
            and not self._crashed.is_set()
        ):
            first, second = coros
            if asyncio.iscoroutine(second):
                second.close()  # the suspend_flow.wait() coroutine, never awaited
            result = await first
            return WaitResults(done=[first], results=[result], stopped=False)
        return await original(self, *coros, timeout=timeout)

    TransportConsumer.wait_first = wait_first  # type: ignore[method-assign]
    _FAST_PATH_INSTALLED = True
    return True

"""Which acknowledgements count towards commits, and the offsets skipped after offset 0.

A subclass of Faust's aiokafka `Consumer` (registered by `transport`):

1. `AckConsumer.ack`: Faust's stream drops a message it takes from its queue while the app's
   flow is stopped (a rebalance begins) or whose fetch generation is not the current one, and
   acknowledges it "otherwise the lag would increase". That offset then counts as done and a
   commit can pass it: never processed, and the seek after the rebalance goes back only to the
   committed offset. Here an acknowledgement records its offset only within
   `acking_processed()` (the agents acknowledge the events they processed in one); any other
   marks the message acknowledged, so nothing waits for it, and records no offset: it is
   fetched again from the committed offset. `never_commit` keeps a refused message out the
   same way, relying on Faust's `ack` skipping a message already marked acknowledged.
2. `AckConsumer._drain_messages`: Faust's fetch loop records the offsets a partition skips
   (transaction markers, aborted records) only `if gap > 1 and r_offset:`, so never after the
   record at offset 0: the acknowledged offsets then start above the committed offset + 1 and
   the partition never commits again. Here a read offset of 0 reads as a true 0
   (`_ReadOffsets`).

Upstream: no upstream issue found (faust-streaming/faust#606, open, is another gap bug in the
same bookkeeping). The changes that would remove them: not acknowledging dropped messages (they
are fetched again), and `r_offset is not None` in `Consumer._drain_messages`. Pinned by
tests/unit/test_acks.py.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import Message
from mode import ServiceT

__all__ = ["AckConsumer", "acking_processed", "never_commit"]

_processed_acks: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "processed_acks", default=False
)


@contextlib.contextmanager
def acking_processed() -> Iterator[None]:
    """Acknowledgements made within this block count towards commits: an agent acknowledges
    the events it processed in one."""
    token = _processed_acks.set(True)
    try:
        yield
    finally:
        _processed_acks.reset(token)


def never_commit(message: Message) -> None:
    """Keep `message`'s offset out of every commit.

    A batch fetched before a rebalance and refused afterwards (its partition is another
    worker's, or its table is still being recovered) is fetched again from the committed
    offset; but Faust acknowledges every event of a `take_events` batch when the agent asks
    for the next one, and an acknowledgement made after the partition came back counts. Marked
    acknowledged, the message is skipped by Faust's consumer.
    """
    message.acked = True


class _TruthyZero(int):
    """Offset 0 that is true, for Faust's `if gap > 1 and r_offset:`."""

    def __bool__(self) -> bool:
        return True


_TRUTHY_ZERO = _TruthyZero(0)


class _ReadOffsets(defaultdict[Any, int | None]):
    """Faust's read offsets (None: nothing read yet), with 0 read back as a true 0."""

    def __getitem__(self, tp: Any) -> int | None:
        value = super().__getitem__(tp)
        return _TRUTHY_ZERO if value == 0 else value


class AckConsumer(faust_aiokafka.Consumer):
    """Faust's consumer counting only processed acknowledgements, and the offsets skipped after
    offset 0 (fixes 1 and 2)."""

    def ack(self, message: Message) -> bool:
        if _processed_acks.get() or message.acked:
            return bool(super().ack(message))
        message.acked = True
        self._unacked_messages.discard(message)
        return False

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        if not isinstance(self._read_offset, _ReadOffsets):
            offsets = _ReadOffsets(lambda: None)
            offsets.update(self._read_offset)
            self._read_offset = offsets
        await super()._drain_messages(fetcher)

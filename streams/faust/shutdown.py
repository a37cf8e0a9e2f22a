"""A bound on `Consumer.wait_empty`, run at every revocation and at shutdown.

Faust clears the stream queues (`flow_control.clear()`) before it waits for every message that
started processing to be acknowledged, and a message cleared from a queue is never
acknowledged: it stays in `_unacked_messages` and Faust waits for it forever ("wait_empty:
Waiting for tasks"), until the shutdown bound runs out and the worker exits 1. Such a message
was never processed, so leaving it uncommitted is right: the partition's next owner (or this
worker, after the seek to committed offsets) reads it again.

`BoundedWaitEmptyConsumer.wait_empty`, a subclass of Faust's aiokafka `Consumer` (registered by
`transport`), replaces Faust's: it gives up waiting once no acknowledgement has come for
`_WAIT_EMPTY_STALL_S`, logs what is left, then commits and ends the transactions as Faust does
(under `exactly_once` the commit still waits for every running batch: the commit gate). Like
the patch it replaces, it does not enter Faust's `CONSUMER_WAIT_EMPTY` diagnostic state.

Upstream: robinhood/faust#402 (open, the project faust-streaming forked) reports the endless
"wait_empty: Waiting for" state; no upstream issue found in faust-streaming/faust. The change
that would remove it: discarding cleared messages from `_unacked_messages` in
`flow_control.clear()`. Pinned by tests/unit/test_commit_gate.py.
"""

from __future__ import annotations

import time

import structlog
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["BoundedWaitEmptyConsumer"]

logger = structlog.get_logger(__name__)

_WAIT_EMPTY_STALL_S = 5.0


class BoundedWaitEmptyConsumer(faust_aiokafka.Consumer):
    """Faust's consumer whose wait for acknowledgements gives up when none come."""

    async def wait_empty(self) -> None:
        last = len(self._unacked_messages)
        progressed_at = time.monotonic()
        while not self.should_stop and self._unacked_messages:
            await self.commit()
            if not self._unacked_messages:
                break
            await self._wait_for_ack(timeout=1)
            self._clean_unacked_messages()
            left = len(self._unacked_messages)
            if left < last:
                last, progressed_at = left, time.monotonic()
            elif time.monotonic() - progressed_at > _WAIT_EMPTY_STALL_S:
                logger.warning(
                    "unacknowledged_messages_left_for_replay",
                    count=left,
                    partitions=sorted(
                        {f"{m.tp.topic}/{m.tp.partition}" for m in self._unacked_messages}
                    )[:12],
                )
                break
        await self.commit_and_end_transactions()

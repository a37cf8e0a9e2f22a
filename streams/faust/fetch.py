"""The fetch loop: a message handed over without four tasks, and our fetch wait at the broker.

Subclasses of Faust's aiokafka `Consumer` and `AIOKafkaConsumerThread` (registered by
`transport`):

1. `FastPathConsumer.wait_first`: `Consumer._drain_messages` delivers every fetched message
   with `await self.wait_first(callback(message), self.suspend_flow.wait())`, and mode's
   `Service.wait_first` wraps each awaitable (plus the service's stopped and crashed events)
   in a task and an `asyncio.wait`: most of the worker's cost per message. While the flow
   is not suspended and the consumer neither stopped nor crashed, the callback's first step
   runs directly, and almost always completes. One that has to wait (a full stream queue, a
   producer over its buffer) goes on in a task raced against `suspend_flow`, as Faust does: a
   rebalance cancels it. (Awaited through a suspension instead, it would deliver its stale
   message after the seek to the committed offsets, and the drain loop would take that offset
   as read and drop the records the seek brought back.) Any other call runs mode's own.
   Faust's consumer has one `wait_first` call, that one (a test pins its shape).
2. `FetchWaitThread._create_worker_consumer`: Faust builds the worker's `AIOKafkaConsumer`
   with `fetch_max_wait_ms=1500`. A broker that does not answer a fetch as soon as data
   arrives (the embedded broker) then holds every empty fetch that long, which shows as
   latency. Here it is the app's `set_fetch_max_wait` (INSIGHTS_FETCH_MAX_WAIT).

Upstream: no upstream issue found for either (faust-streaming/faust#229, closed, is a deadlock
at the same `wait_first` call). The changes that would remove them: a direct
`await callback(message)` in `_drain_messages` while the flow runs, raced against suspension
only when it blocks; a `consumer_fetch_max_wait` setting. Pinned by
tests/unit/test_faust_pitfalls.py.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitArgT, WaitResults
from mode.utils.times import Seconds

from streams.faust.coroutines import resumed

__all__ = ["FastPathConsumer", "FetchWaitThread", "set_fetch_max_wait"]


class FastPathConsumer(faust_aiokafka.Consumer):
    """Faust's consumer whose drain loop delivers a message without tasks when it can (fix 1)."""

    async def wait_first(
        self,
        *coros: WaitArgT,
        timeout: Seconds | None = None,  # noqa: ASYNC109  (mode's signature)
    ) -> WaitResults:
        if (
            len(coros) == 2
            and timeout is None
            and asyncio.iscoroutine(coros[0])
            and not self.suspend_flow.is_set()
            and not self._stopped.is_set()
            and not self._crashed.is_set()
        ):
            first: Any = coros[0]
            second = coros[1]
            try:
                awaited = first.send(None)
            except StopIteration as finished:
                if asyncio.iscoroutine(second):
                    second.close()  # the suspend_flow.wait() coroutine, never awaited
                return WaitResults(done=[first], results=[finished.value], stopped=False)
            rest = asyncio.ensure_future(resumed(first, awaited))
            return await super().wait_first(rest, second)
        # None is mode's own default (no timeout), which its annotation leaves out.
        return await super().wait_first(*coros, timeout=cast(Seconds, timeout))


_fetch_max_wait_ms: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
"""The fetch wait of each app that set one (weakly keyed: it lives as long as its app)."""


def set_fetch_max_wait(app: faust.App, milliseconds: int) -> None:
    """How long a fetch of `app`'s consumer may wait at the broker for data (Kafka's
    `fetch.max.wait.ms`), instead of Faust's 1,500 ms. Takes effect for consumers created
    afterwards."""
    _fetch_max_wait_ms[app] = milliseconds


class FetchWaitThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread building the worker's consumer with the app's fetch wait (fix 2)."""

    def _create_worker_consumer(
        self, transport: faust_aiokafka.Transport
    ) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = _fetch_max_wait_ms.get(self.app)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = wait_ms  # read by start(), which builds the fetcher
        return consumer

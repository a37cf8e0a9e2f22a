"""Table recovery's changelog poll: every 1 s instead of every 5 s, and no empty poll of a new
recovery before two polls' time.

Under `exactly_once` a changelog partition ends with a transaction marker that no record
reaches, so `Recovery._slurp_changelogs` ends a recovery only when two consecutive polls of its
changelog queue (`asyncio.wait_for(changelog_queue.get(), timeout=5.0)`, its one `wait_for`)
come back empty, two 5 s waits in every takeover. And its count of empty polls lives on from one
recovery to the next (a local of that loop, reset only by a record): after a quiet spell the
first empty poll of a new recovery already counts as the second, and Faust marks every
partition whose fetch position has reached its highwater as read up to it while its records
are still on their way to the queue; they are then skipped as applied.

1. `install_recovery_poll` (a patch: `_slurp_changelogs` is a 140-line task with no hook)
   replaces the `asyncio` global of `faust.tables.recovery` with `_RecoveryAsyncio`, whose
   `wait_for` polls at most every `_RECOVERY_IDLE_POLL_S` and never gives up before two polls'
   time since the latest recovery started; a record already queued is returned without a task
   at all. Everything else of that `asyncio` is asyncio's own.
2. `IdlePollRecovery._set_recovery_started` (a subclass of Faust's `Recovery`, registered by
   `transport`) records when a recovery starts.

The poll only wakes the loop; records are applied as they arrive either way. Upstream: no
upstream issue found. The changes that would remove it: a setting for that timeout, resetting
the count when a recovery starts, or ending recovery when the records up to the highwater have
been applied rather than fetched. Pinned by tests/unit/test_faust_pitfalls.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust.tables.recovery as faust_recovery

from streams.faust.coroutines import resumed

__all__ = ["IdlePollRecovery", "install_recovery_poll"]

_RECOVERY_IDLE_POLL_S = 1.0
_RECOVERY_SETTLE_POLLS = 2
_recovery_started_at = [float("-inf")]
"""Monotonic time the latest recovery started (process-wide, as the patched module is)."""


class _RecoveryAsyncio:
    """`asyncio` as Faust's recovery module sees it: `wait_for` polls at most every
    `_RECOVERY_IDLE_POLL_S` and never gives up before `_RECOVERY_SETTLE_POLLS` polls' time
    has passed since the latest recovery started; the rest is asyncio's own."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def wait_for(awaitable: Any, timeout: float | None) -> Any:  # noqa: ASYNC109
        if timeout is None:
            return await asyncio.wait_for(awaitable, None)
        if asyncio.iscoroutine(awaitable):
            try:
                awaited = awaitable.send(None)
            except StopIteration as finished:
                return finished.value  # it did not have to wait
            awaitable = resumed(awaitable, awaited)
        called_at = time.monotonic()
        poll = min(timeout, _RECOVERY_IDLE_POLL_S)
        task = asyncio.ensure_future(awaitable)
        try:
            while True:
                settled_at = _recovery_started_at[0] + _RECOVERY_SETTLE_POLLS * poll
                remaining = max(called_at + poll, settled_at) - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                done, _ = await asyncio.wait({task}, timeout=remaining)
                if done:
                    return task.result()
        finally:
            if not task.done():
                task.cancel()


def install_recovery_poll() -> None:
    """Make Faust's recovery module use `_RecoveryAsyncio` (idempotent)."""
    if not isinstance(vars(faust_recovery)["asyncio"], _RecoveryAsyncio):
        setattr(faust_recovery, "asyncio", _RecoveryAsyncio())  # noqa: B010  (module global)


class IdlePollRecovery(faust_recovery.Recovery):
    """Faust's recovery service recording when each recovery starts (fix 2)."""

    def _set_recovery_started(self) -> None:
        _recovery_started_at[0] = time.monotonic()
        super()._set_recovery_started()

"""The commit gate: Faust commits only between units of work, and never after one failed.

Faust commits on a timer (`Consumer._commit_handler`), whenever that task runs, with no regard
for what the agents are doing. Under `exactly_once` a commit ends the transactions, so one
could end between a batch's sends and its acknowledgement (a crash then replays the batch
whose outputs were already committed), or between a window's final and the state write that
records it as sent. Under both guarantees, Faust acknowledges a `take_events` batch even when
the agent failed on it, and later batches would carry the committed offset past it.

`CommitGate` is the app's rendezvous of both sides: agents run each unit (a batch up to its
acknowledgement, a timer's flush) inside `work()`, and the transactions fix
(`transactions.GatedCommitConsumer._commit_tps`) commits inside `commit()`, which waits for
running units and holds new ones back. Upstream: no upstream issue found; the change that would
remove it is a commit hook agents can hold off. Pinned by tests/unit/test_commit_gate.py and
tests/unit/test_readiness.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from faust.types import AppT

__all__ = ["CommitGate", "commit_gate", "work_failure"]


class CommitGate:
    """Units of work run side by side; a commit waits until none is running and holds new ones
    back meanwhile. Under `exactly_once` a transaction then always holds whole units: never the
    outputs of a batch without its offsets, nor a final without the state that records it sent.
    """

    def __init__(self) -> None:
        self._running = 0
        self._committing = False
        self._closed = False
        self._changed = asyncio.Condition()
        self.failed: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        """A unit of work failed part-way: from now on nothing is committed by this process
        (Faust may still acknowledge the failed batch, and later batches of the same
        partitions would carry the committed offset past it). The worker must stop; the
        partitions' next owner redoes the work from the last commit."""
        if self.failed is None:
            self.failed = exc
            self._closed = True

    @contextlib.asynccontextmanager
    async def work(self) -> AsyncIterator[None]:
        """One unit of work: waits while a commit runs or the gate is closed."""
        async with self._changed:
            await self._changed.wait_for(lambda: not (self._committing or self._closed))
            self._running += 1
        try:
            yield
        finally:
            async with self._changed:
                self._running -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def commit(self) -> AsyncIterator[None]:
        """One commit: waits for the running units, and holds new ones back until it is done."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._committing)
            self._committing = True
            await self._changed.wait_for(lambda: self._running == 0)
        try:
            yield
        finally:
            async with self._changed:
                self._committing = False
                self._changed.notify_all()

    def close(self) -> None:
        """No new unit of work starts until `reopen` (the transactions have ended: on a
        rebalance until new ones begin, at shutdown for good)."""
        self._closed = True

    async def reopen(self) -> None:
        """New transactions began: units of work may start again."""
        async with self._changed:
            self._closed = False
            self._changed.notify_all()


_gates: weakref.WeakKeyDictionary[Any, CommitGate] = weakref.WeakKeyDictionary()
"""The gate of each app (weakly keyed: it lives as long as its app)."""


def commit_gate(app: AppT) -> CommitGate:
    """The app's commit gate (one per app, made on first use)."""
    gate = _gates.get(app)
    if gate is None:
        gate = _gates[app] = CommitGate()
    return gate


def work_failure(app: Any) -> BaseException | None:
    """Why the app's work failed (`CommitGate.fail`), None while it has not (or no gate)."""
    try:
        gate = _gates.get(app)
    except TypeError:  # not weak-referenceable: no gate was ever made for it
        return None
    return gate.failed if gate is not None else None

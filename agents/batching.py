"""Running one batch to completion, even when the agent is being stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["run_to_completion"]


async def run_to_completion(work: Coroutine[Any, Any, None]) -> None:
    """Await `work`; if this task is cancelled meanwhile (shutdown, rebalance), let `work`
    finish first and then re-raise.

    Faust acknowledges a `take_events()` batch when the agent leaves its body, also on
    cancellation; finishing the batch first means no acknowledged event has effects that
    were never written or sent.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            await asyncio.wait({task})
        raise

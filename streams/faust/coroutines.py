"""Running a coroutine's first step by hand, for the fast paths in `fetch` and `recovery`.

Changes no Faust behaviour: both fast paths run an awaitable's first step directly and, only
when it has to wait, hand the rest to a task (`resumed`), instead of always wrapping it in a
task and an `asyncio.wait`. Pinned by the fast-path and recovery-poll tests in
tests/unit/test_faust_pitfalls.py.
"""

from __future__ import annotations

import types
from collections.abc import Generator
from typing import Any

__all__ = ["resumed"]


@types.coroutine
def resumed(coro: Any, awaited: Any) -> Generator[Any, Any, Any]:
    """Go on with `coro`, started by hand and now waiting for `awaited` (what it yielded), as a
    task would: what the task sends or throws in goes on to `coro`."""
    while True:
        try:
            sent = yield awaited
        except BaseException as exc:  # a cancellation too: it goes on to `coro`
            try:
                awaited = coro.throw(exc)
            except StopIteration as finished:
                return finished.value
        else:
            try:
                awaited = coro.send(sent)
            except StopIteration as finished:
                return finished.value

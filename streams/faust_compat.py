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

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import faust
from faust import streams as _faust_streams
from faust.events import Event
from faust.types import Message

__all__ = ["writing_partition"]


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

"""Giving freed heap memory back to the operating system.

A burst (a backlog, 100,000 new keys at once) leaves the C heap full of freed blocks that
glibc keeps: orjson's 4 KiB output buffers, Kafka batches, resized dicts. Measured on the
recovery bench (100,000 keys): 941 MB RSS after the burst, 733 MB when `malloc_trim` ran
every couple of seconds; a fresh replica holding the same state, 436 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from typing import Final

__all__ = ["heap_trimmer"]

_MIN_INTERVAL_S: Final = 10.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)  # glibc only (not musl)
    return trim if callable(trim) else None


def heap_trimmer(min_interval_s: float = _MIN_INTERVAL_S) -> Callable[[], bool]:
    """A function that returns free heap pages to the system (glibc `malloc_trim(0)`) at
    most once per `min_interval_s`; it says whether it did. A no-op without glibc."""
    trim = _malloc_trim()
    last = -min_interval_s

    def maybe_trim() -> bool:
        nonlocal last
        now = time.monotonic()
        if trim is None or now - last < min_interval_s:
            return False
        last = now
        trim(0)
        return True

    return maybe_trim

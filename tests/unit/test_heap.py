"""The heap trimmer runs glibc's malloc_trim, at most once per interval."""

from __future__ import annotations

from streams.runtime.heap import heap_trimmer


def test_trims_once_then_waits_for_the_interval() -> None:
    trim = heap_trimmer(min_interval_s=3600)
    assert trim() is True  # glibc here (Debian, and the image)
    assert trim() is False


def test_a_zero_interval_trims_every_time() -> None:
    trim = heap_trimmer(min_interval_s=0)
    assert [trim(), trim(), trim()] == [True, True, True]

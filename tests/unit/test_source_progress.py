"""SourceProgress: what the ingest side tells keyed partitions of each input partition."""

from __future__ import annotations

from agents.source_progress import FETCH_FRESH_MS, FetchState, SourceProgress
from models.keyed import SourceReport

NOW_MS = 1_795_780_800_000


def caught_up(offset: int, *, polled_ms: int = NOW_MS, active: bool = True) -> FetchState:
    return FetchState(offset, offset, polled_ms, offset, active)


def test_progress_goes_once_to_each_partition_not_told_yet() -> None:
    progress = SourceProgress(4, idle_timeout_s=10)
    progress.read(2, 5_000, read_to=10, now_s=0)
    assert progress.report(2, 1, now_s=0) == SourceReport(2, 5_000, 4)  # with records
    behind = FetchState(10, 50, NOW_MS, 10, True)
    assert [d for d, _ in progress.due(2, behind, 3, now_s=1, now_ms=NOW_MS)] == [0, 2]
    assert progress.due(2, behind, 3, now_s=2, now_ms=NOW_MS) == []  # nothing new
    progress.untell(2, 0)  # refused there: due again
    assert [d for d, _ in progress.due(2, behind, 3, now_s=2, now_ms=NOW_MS)] == [0]
    progress.read(2, 4_000, read_to=11, now_s=3)  # an older event: the mark stays
    assert progress.due(2, behind, 3, now_s=3, now_ms=NOW_MS) == []


def test_idle_only_caught_up_silent_fresh_and_taking_input() -> None:
    progress = SourceProgress(2, idle_timeout_s=10)
    progress.read(0, 5_000, read_to=10, now_s=0)
    assert not progress.idle(0, caught_up(10), now_s=9, now_ms=NOW_MS)  # not silent long
    assert progress.idle(0, caught_up(10), now_s=10, now_ms=NOW_MS)
    unread = FetchState(10, 11, NOW_MS, 10, True)
    assert not progress.idle(0, unread, now_s=60, now_ms=NOW_MS)  # input left to read
    queued = FetchState(12, 12, NOW_MS, 12, True)  # fetched, not processed yet
    assert not progress.idle(0, queued, now_s=60, now_ms=NOW_MS)
    stale = caught_up(10, polled_ms=NOW_MS - FETCH_FRESH_MS - 1)  # broker out of reach
    assert not progress.idle(0, stale, now_s=60, now_ms=NOW_MS)
    paused = caught_up(10, active=False)  # a rebalance, a recovery
    assert not progress.idle(0, paused, now_s=60, now_ms=NOW_MS)
    assert progress.due(0, paused, 2, now_s=60, now_ms=NOW_MS) == []


def test_an_idle_source_repeats_its_idle_report_to_every_partition() -> None:
    progress = SourceProgress(2, idle_timeout_s=10)
    progress.read(1, None, read_to=3, now_s=0)  # only invalid input so far
    for now_s in (10, 11):
        due = progress.due(1, caught_up(3), 2, now_s=now_s, now_ms=NOW_MS + now_s)
        assert due == [(d, SourceReport(1, None, 2, NOW_MS + now_s)) for d in (0, 1)]
    progress.forget({1})  # revoked: a new owner starts from its input, silent from now
    assert progress.due(1, caught_up(3), 2, now_s=12, now_ms=NOW_MS) == []

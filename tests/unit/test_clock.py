"""SourceClock against a brute-force reference: the minimum over sources, idle sources left
out while their reports are fresh, unknown sources holding, never back, snapshot/restore."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.rolling.changelog import ClockRecord
from agents.rolling.clock import SourceClock, SourceReport

LEASE_MS = 5_000


def reference(history: list[tuple[SourceReport, int]], sources: int, now_ms: int) -> int | None:
    """The candidate watermark at `now_ms` from every report so far, computed from scratch."""
    marks: dict[int, int | None] = {}
    last: dict[int, SourceReport] = {}
    for report, _ in history:
        previous = marks.get(report.source)
        candidates = [m for m in (previous, report.watermark_ms) if m is not None]
        marks[report.source] = max(candidates) if candidates else None
        last[report.source] = report
    if any(n not in last for n in range(sources)):
        return None
    idle = {
        n
        for n in range(sources)
        if last[n].idle_at_ms is not None and now_ms - (last[n].idle_at_ms or 0) < LEASE_MS
    }
    active = [marks[n] for n in range(sources) if n not in idle]
    if any(m is None for m in active):
        return None
    if active:
        return min(m for m in active if m is not None)
    known = [m for m in marks.values() if m is not None]
    return max(known) if known else None


reports = st.lists(
    st.tuples(
        st.integers(0, 3),  # source
        st.one_of(st.none(), st.integers(0, 100_000)),  # watermark
        st.booleans(),  # idle
        st.integers(0, 3_000),  # wall time passing before the report
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(reports)
def test_the_watermark_is_the_running_max_of_the_reference(steps: list[Any]) -> None:
    clock = SourceClock(LEASE_MS)
    history: list[tuple[SourceReport, int]] = []
    now_ms = 1_000_000
    expected: int | None = None
    for source, mark, idle, wait_ms in steps:
        now_ms += wait_ms
        report = SourceReport(source, mark, 4, now_ms if idle else None)
        history.append((report, now_ms))
        clock.observe(report, now_ms)
        candidate = reference(history, 4, now_ms)
        if candidate is not None and (expected is None or candidate > expected):
            expected = candidate
        assert clock.watermark_ms == expected


def test_a_source_far_behind_holds_every_window() -> None:
    clock = SourceClock(LEASE_MS)
    assert clock.observe(SourceReport(0, 10_000_000, 2), 0) is None  # source 1 unknown
    assert clock.observe(SourceReport(1, 1_000, 2), 0) == 1_000
    assert clock.observe(SourceReport(0, 20_000_000, 2), 0) is None  # still 1_000
    assert clock.observe(SourceReport(1, 5_000, 2), 0) == 5_000


def test_an_idle_source_stops_holding_until_its_reports_stop_or_it_produces() -> None:
    clock = SourceClock(LEASE_MS)
    clock.observe(SourceReport(1, 1_000, 2), 0)
    clock.observe(SourceReport(0, 50_000, 2), 0)
    assert clock.watermark_ms == 1_000
    assert clock.observe(SourceReport(1, 1_000, 2, idle_at_ms=100), 100) == 50_000
    assert clock.all_idle(100) is False  # source 0 is active
    # Its idle report lapses (no news: its worker may be gone): it holds again.
    clock.observe(SourceReport(0, 90_000, 2), 100 + LEASE_MS)
    assert clock.watermark_ms == 50_000  # never back; held at source 1's 1_000 from here
    assert clock.lag_ms(100 + LEASE_MS) == {0: 100 + LEASE_MS - 90_000, 1: 100 + LEASE_MS - 1_000}
    # It produces again: active, its own watermark.
    clock.observe(SourceReport(1, 70_000, 2), 200 + LEASE_MS)
    assert clock.watermark_ms == 70_000


def test_every_source_idle_is_the_greatest_watermark_and_allows_the_wall_clock() -> None:
    clock = SourceClock(LEASE_MS)
    clock.observe(SourceReport(0, 3_000, 2, idle_at_ms=0), 0)
    assert clock.all_idle(0) is False  # source 1 never heard from
    clock.observe(SourceReport(1, None, 2, idle_at_ms=10), 10)
    assert clock.watermark_ms == 3_000
    assert clock.all_idle(10) is True
    assert clock.all_idle(10 + LEASE_MS) is False


def test_snapshot_and_restore_keep_the_marks_but_not_idleness() -> None:
    clock = SourceClock(LEASE_MS)
    clock.observe(SourceReport(0, 3_000, 3), 0)
    clock.observe(SourceReport(1, 2_000, 3, idle_at_ms=0), 0)
    clock.observe(SourceReport(2, 9_000, 3), 0)
    assert clock.watermark_ms == 3_000
    restored = SourceClock(LEASE_MS)
    restored.restore(clock.snapshot())
    assert restored.snapshot() == clock.snapshot()
    assert restored.all_idle(0) is False
    restored.observe(SourceReport(0, 12_000, 3), 1)  # source 1 holds again, at 2_000
    assert restored.watermark_ms == 3_000


def test_a_bare_watermark_written_before_source_clocks_is_the_floor() -> None:
    clock = SourceClock(LEASE_MS)
    clock.restore(ClockRecord(7_000, 0, {}))  # as the changelog codec decodes `7000`
    assert clock.watermark_ms == 7_000
    clock.observe(SourceReport(0, 5_000, 1), 0)
    assert clock.watermark_ms == 7_000
    clock.observe(SourceReport(0, 8_000, 1), 0)
    assert clock.watermark_ms == 8_000

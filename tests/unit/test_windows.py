"""Window maths: epoch-aligned tumbling and hopping windows over gcd panes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.rolling import Window, WindowPlan
from streams.runtime.windows import WindowSpec, parse_windows
from tests.support.truth import windows_holding

TUMBLING = WindowSpec("tumbling", 60, 60)
HOPPING = WindowSpec("hopping", 300, 60)


def test_pane_is_the_gcd_of_sizes_and_steps() -> None:
    assert WindowPlan([TUMBLING, HOPPING], 0).pane_ms == 60_000
    assert WindowPlan(parse_windows("tumbling:90s,hopping:60s/20s"), 0).pane_ms == 10_000


def test_tumbling_window_of_an_event() -> None:
    plan = WindowPlan([TUMBLING], 0)
    t = 1_795_780_803_120  # 2026-11-27T12:00:03.120Z
    [window] = plan.windows_of(t)
    assert (window.start_ms, window.end_ms) == (1_795_780_800_000, 1_795_780_860_000)
    assert plan.pane_of(t) == 1_795_780_800_000


def test_hopping_windows_are_every_step_aligned_start_holding_the_event() -> None:
    plan = WindowPlan([HOPPING], 0)
    t = 1_795_780_803_120
    starts = sorted(w.start_ms for w in plan.windows_of(t))
    assert starts == [1_795_780_800_000 - k * 60_000 for k in (4, 3, 2, 1, 0)]
    assert all(w.start_ms <= t < w.end_ms for w in plan.windows_of(t))


def test_window_boundaries_are_half_open() -> None:
    plan = WindowPlan([TUMBLING], 0)
    [window] = plan.windows_of(60_000)
    assert (window.start_ms, window.end_ms) == (60_000, 120_000)


@pytest.mark.parametrize(
    ("watermark", "late"),
    [(None, False), (89_999, False), (90_000, True), (10**9, True)],
)
def test_an_event_is_late_when_its_last_window_closed(watermark: int | None, late: bool) -> None:
    plan = WindowPlan([TUMBLING], 30_000)  # window [0, 60s) closes at 60s + 30s grace
    assert plan.is_late(59_999, watermark) is late


@pytest.mark.parametrize(
    "specs", ["tumbling:60s", "tumbling:60s,hopping:300s/60s", "hopping:90s/30s"]
)
@pytest.mark.parametrize("grace_s", [0, 1, 30])
def test_late_means_every_window_holding_the_time_has_closed(specs: str, grace_s: int) -> None:
    # Every time around the window edges of 10 minutes (each second, ±1 ms) against
    # watermarks from just behind it to 7 minutes ahead.
    plan = WindowPlan(parse_windows(specs), grace_s * 1000)
    times = [s * 1000 + d for s in range(0, 600, 3) for d in (-1, 0, 1)]
    aheads = [s * 1000 + d for s in range(-1, 420, 3) for d in (-1, 0, 1)]
    for t in times:
        ends = [end for _, _, end in windows_holding(t, plan.specs)]
        assert not plan.is_late(t, None)
        for ahead in aheads:
            watermark = t + ahead
            late = all(end + plan.grace_ms <= watermark for end in ends)
            assert plan.is_late(t, watermark) is late, (t, watermark)


def test_hopping_event_is_not_late_while_a_later_window_is_open() -> None:
    plan = WindowPlan([TUMBLING, HOPPING], 0)
    # At watermark 100s the windows ending at 60s have closed; hopping [0, 300s) has not.
    assert not plan.is_late(10_000, 100_000)
    closing = plan.windows_closing([0], None, 100_000)
    assert [(w.spec.type, w.start_ms, w.end_ms) for w in closing] == [
        ("hopping", -240_000, 60_000),
        ("tumbling", 0, 60_000),
    ]


def brute_closes(plan: WindowPlan, panes: list[int]) -> list[tuple[int, Window]]:
    """(close, window) of every window holding one of `panes`, by brute force over aligned
    starts (`windows_holding`, independent of the plan's arithmetic)."""
    specs = {spec.type: spec for spec in plan.specs}
    return sorted(
        {
            (end + plan.grace_ms, Window(end, start, specs[kind]))
            for p in panes
            for kind, start, end in windows_holding(p, plan.specs)
        }
    )


@settings(max_examples=300, deadline=None)
@given(
    specs=st.sampled_from(
        [
            "tumbling:60s,hopping:300s/60s",
            "tumbling:90s,hopping:60s/20s",
            "hopping:120s/30s,tumbling:45s",
        ]
    ),
    grace=st.integers(0, 200_000),
    panes=st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=6),
    after=st.one_of(st.none(), st.integers(-(10**6), 2 * 10**6)),
    span=st.integers(0, 10**6),
)
def test_closing_and_next_close_equal_brute_force(
    specs: str, grace: int, panes: list[int], after: int | None, span: int
) -> None:
    plan = WindowPlan(parse_windows(specs), grace)
    panes = [plan.pane_of(p) for p in panes]
    closes = brute_closes(plan, panes)
    assert {w for p in panes for w in plan.windows_of(p)} == {w for _, w in closes}
    until = (after if after is not None else -(10**6)) + span
    assert plan.windows_closing(panes, after, until) == sorted(
        w for c, w in closes if (after is None or c > after) and c <= until
    )
    later = [c for c, _ in closes if after is None or c > after]
    assert plan.next_close(panes, after) == (min(later) if later else None)
    # What `PartitionState._close` relies on to share one close plan among keys: from the
    # last close on, the windows closing by `until` are those from the next close on.
    due = plan.next_close(panes, after)
    if due is not None:
        assert plan.windows_closing(panes, due - 1, until) == plan.windows_closing(
            panes, after, until
        )

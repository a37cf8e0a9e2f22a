"""PartitionState against an independent reference: watermark closing, late events,
duplicates, out-of-order data, and restore-from-changelog equal to an uninterrupted run."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.rolling import Emission, Outcome, PartitionState, WindowPlan
from agents.rolling.state import JOURNAL_CHUNK_IDS
from models.keyed import KeyedObservation
from streams.durations import WindowSpec, parse_windows
from tests.support.truth import Event, assert_matches, expected_figures, windows_holding

SPECS = parse_windows("tumbling:60s,hopping:300s/60s")
GRACE_MS = 30_000
FAR_FUTURE = 10**13


def keyed(event: Event, scope: str = "subject") -> KeyedObservation:
    entity = event.subject_id if scope == "subject" else (event.group_id or "")
    return KeyedObservation(
        scope,  # type: ignore[arg-type]
        entity,
        event.event_id,
        event.observer_id,
        event.subject_id,
        event.group_id,
        event.metric,
        event.value,
        event.observed_ms,
        None,
        0,
        0,
        0,
    )


def figures(emission: Emission) -> dict[str, Any]:
    s = emission.summary
    return {
        "count": s.count, "sum": s.sum, "mean": s.mean, "min": s.min, "max": s.max,
        "stddev": s.stddev, "first_value": s.first_value, "last_value": s.last_value,
        "first_ms": s.first_ms, "last_ms": s.last_ms, "observers": s.observers,
        "rate_per_s": s.count / emission.window.spec.size_s,
        "p50": s.p50, "p90": s.p90, "p99": s.p99,
    }  # fmt: skip


def reference(
    events: list[Event], specs: list[WindowSpec]
) -> tuple[dict[Any, list[Event]], set[str]]:
    """Finals per window and the ids of late events, by the design's rules, brute force."""
    watermark: int | None = None
    seen: set[str] = set()
    late: set[str] = set()
    buckets: dict[Any, list[Event]] = {}
    for event in events:
        if event.event_id in seen:
            continue
        windows = windows_holding(event.observed_ms, specs)
        open_ = [w for w in windows if watermark is None or w[2] + GRACE_MS > watermark]
        if not open_:
            late.add(event.event_id)
            continue
        seen.add(event.event_id)
        for kind, start, end in open_:
            buckets.setdefault((event.subject_id, event.metric, kind, start, end), []).append(event)
        watermark = event.observed_ms if watermark is None else max(watermark, event.observed_ms)
    return buckets, late


def run(state: PartitionState, events: list[Event]) -> tuple[list[Emission], set[str]]:
    finals: list[Emission] = []
    late: set[str] = set()
    for i, event in enumerate(events):
        if state.offer(keyed(event), received_ms=i) is Outcome.LATE:
            late.add(event.event_id)
        finals.extend(state.take_finals())
    state.advance(FAR_FUTURE)
    finals.extend(state.take_finals())
    return finals, late


def by_window(finals: list[Emission]) -> dict[Any, Emission]:
    result = {}
    for e in finals:
        key = (e.key[1], e.key[2], e.window.spec.type, e.window.start_ms, e.window.end_ms)
        assert key not in result, f"two finals for {key}"
        result[key] = e
    return result


def stream(seed: int, n: int, disorder_ms: int, late_share: float) -> list[Event]:
    rng = random.Random(seed)
    events, t = [], 1_795_780_800_000
    for i in range(n):
        t += rng.randint(0, 4_000)
        observed = t - rng.randint(0, disorder_ms)
        if rng.random() < late_share:
            observed = t - rng.randint(300_000, 900_000)
        value = round(rng.gauss(20, 5), 3)
        subject = rng.choice(["s-1", "s-2"])
        events.append(Event(f"e{i}", rng.choice(["o1", "o2"]), subject, "temp", value, observed))
        if rng.random() < 0.05:
            events.append(events[rng.randrange(len(events))])  # a duplicate, sent again
    return events


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), disorder=st.sampled_from([0, 20_000, 45_000]))
def test_finals_and_late_events_equal_the_reference(seed: int, disorder: int) -> None:
    events = stream(seed, 300, disorder, late_share=0.03)
    state = PartitionState(WindowPlan(SPECS, GRACE_MS), dedup_ttl_ms=10**9)
    finals, late = run(state, events)
    expected, expected_late = reference(events, list(SPECS))
    assert late == expected_late
    got = by_window(finals)
    assert set(got) == set(expected)
    for key, window_events in expected.items():
        size_s = (key[4] - key[3]) // 1000
        assert_matches(figures(got[key]), expected_figures(window_events, size_s), str(key))
    assert state.key_count == 0  # closed windows are removed from state


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), cut=st.integers(1, 299))
def test_restore_from_persisted_state_equals_an_uninterrupted_run(seed: int, cut: int) -> None:
    events = stream(seed, 300, 20_000, late_share=0.02)
    plan = WindowPlan(SPECS, GRACE_MS)
    straight, straight_late = run(PartitionState(plan, 10**9), events)

    first = PartitionState(plan, 10**9)
    finals: list[Emission] = []
    late: set[str] = set()
    table: dict[str, bytes] = {}
    for i, event in enumerate(events[:cut]):
        if first.offer(keyed(event), received_ms=i) is Outcome.LATE:
            late.add(event.event_id)
        finals.extend(first.take_finals())
        writes, _ = first.take_persist(f"chunk-{i}")
        for name, value in writes.items():
            if value is None:
                table.pop(name, None)
            else:
                table[name] = value
    second = PartitionState(plan, 10**9)
    second.restore(table.items())
    assert second.take_finals() == []
    for subject in {event.subject_id for event in events[:cut]}:  # queries answer the same
        assert second.current("subject", subject) == first.current("subject", subject)
    rest, rest_late = [], set()
    for i, event in enumerate(events[cut:], start=cut):
        if second.offer(keyed(event), received_ms=i) is Outcome.LATE:
            rest_late.add(event.event_id)
        rest.extend(second.take_finals())
    second.advance(FAR_FUTURE)
    rest.extend(second.take_finals())

    assert late | rest_late == straight_late
    resumed, uninterrupted = by_window(finals + rest), by_window(straight)
    assert set(resumed) == set(uninterrupted)
    for key, emission in uninterrupted.items():
        assert figures(resumed[key]) == figures(emission), key


def test_duplicates_expire_after_the_ttl() -> None:
    state = PartitionState(WindowPlan(SPECS, GRACE_MS), dedup_ttl_ms=600_000)
    event = Event("e1", "o1", "s-1", "temp", 1.0, 1_795_780_800_000)
    assert state.offer(keyed(event), received_ms=0) is Outcome.COUNTED
    assert state.offer(keyed(event), received_ms=599_999) is Outcome.DUPLICATE
    assert state.offer(keyed(event), received_ms=600_000) is Outcome.COUNTED


def test_a_big_flush_journals_its_ids_in_bounded_chunks_that_restore_whole() -> None:
    plan = WindowPlan(SPECS, GRACE_MS)
    state = PartitionState(plan, dedup_ttl_ms=600_000)
    ids = [f"event-{i:05d}-" + "x" * 116 for i in range(5000)]  # 128 characters each
    for i, event_id in enumerate(ids):
        event = Event(event_id, "o1", f"s-{i % 50}", "temp", 1.0, 1_795_780_800_000 + i)
        assert state.offer(keyed(event), received_ms=i) is Outcome.COUNTED

    writes, _ = state.take_persist("flush-1")

    journal = {name: value for name, value in writes.items() if name.startswith('["d"')}
    assert len(journal) == -(-len(ids) // JOURNAL_CHUNK_IDS)
    assert all(value is not None and len(value) < 512 * 1024 for value in journal.values())
    restored = PartitionState(plan, dedup_ttl_ms=600_000)
    restored.restore([(name, value) for name, value in writes.items() if value is not None])
    for i, event_id in enumerate(ids):
        event = Event(event_id, "o1", f"s-{i % 50}", "temp", 1.0, 1_795_780_800_000 + i)
        assert restored.offer(keyed(event), received_ms=6000) is Outcome.DUPLICATE


def test_subject_and_group_copies_are_not_duplicates_of_each_other() -> None:
    state = PartitionState(WindowPlan(SPECS, GRACE_MS), dedup_ttl_ms=600_000)
    event = Event("e1", "o1", "s-1", "temp", 1.0, 1_795_780_800_000, group_id="g")
    assert state.offer(keyed(event, "subject"), received_ms=0) is Outcome.COUNTED
    assert state.offer(keyed(event, "group"), received_ms=0) is Outcome.COUNTED
    assert state.key_count == 2


def test_changes_are_coalesced_per_key_and_window() -> None:
    plan = WindowPlan([WindowSpec("tumbling", 60, 60)], GRACE_MS)
    state = PartitionState(plan, dedup_ttl_ms=600_000)
    for i in range(10):
        event = Event(f"e{i}", "o1", "s-1", "temp", float(i), 1_795_780_800_000 + i)
        state.offer(keyed(event), received_ms=i)
    changes = list(state.take_changes())
    assert [(c.final, c.summary.count) for c in changes] == [(False, 10)]
    assert list(state.take_changes()) == []

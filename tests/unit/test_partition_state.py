"""PartitionState against an independent reference: watermark closing, late events,
duplicates, out-of-order data, and restore-from-changelog equal to an uninterrupted run."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.anomaly import AnomalyConfig
from agents.rolling import Emission, Outcome, PartitionState, WindowPlan
from agents.rolling.aggregate import AGGREGATE_KINDS, OneValue
from agents.rolling.changelog import JournalRecord, Kind, decode
from agents.rolling.dedup import JOURNAL_CHUNK_IDS
from agents.rolling.latest_finals import LATEST_RETENTION_MS
from agents.rolling.state import LATEST_SWEEP_MS
from models.keyed import KeyedObservation, SourceReport
from streams.runtime.windows import WindowSpec, parse_windows
from tests.support.truth import (
    Event,
    assert_matches,
    basic_only,
    expected_figures,
    group_by_window,
    windows_holding,
)

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


def offer(state: PartitionState, record: KeyedObservation, received_ms: int) -> Outcome:
    """Offer a record from the one source (input partition 0) and report its progress
    after it, as the ingest agent does for in-order input: the watermark then follows the
    greatest `observed_at`."""
    outcome = state.offer(record, received_ms)
    state.observe(SourceReport(0, record.observed_ms, 1), now_ms=received_ms)
    return outcome


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
        if offer(state, keyed(event), received_ms=i) is Outcome.LATE:
            late.add(event.event_id)
        finals.extend(state.take_finals())
    state.advance(FAR_FUTURE)
    finals.extend(state.take_finals())
    return finals, late


def apply(table: dict[str, bytes], writes: dict[str, bytes | None]) -> None:
    """Persisted writes into `table`, as the changelog (None deletes)."""
    for name, value in writes.items():
        if value is None:
            table.pop(name, None)
        else:
            table[name] = value


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


@pytest.mark.parametrize("kind", ["full", "basic"])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), disorder=st.sampled_from([0, 20_000, 45_000]))
def test_finals_and_late_events_equal_the_reference(kind: str, seed: int, disorder: int) -> None:
    """`basic` gives the basic figures exactly and null for the rest."""
    events = stream(seed, 300, disorder, late_share=0.03)
    plan = WindowPlan(SPECS, GRACE_MS)
    state = PartitionState(plan, dedup_ttl_ms=10**9, aggregates=AGGREGATE_KINDS[kind])
    finals, late = run(state, events)
    expected, expected_late = reference(events, list(SPECS))
    assert late == expected_late
    got = by_window(finals)
    assert set(got) == set(expected)
    shape = basic_only if kind == "basic" else dict
    for key, window_events in expected.items():
        size_s = (key[4] - key[3]) // 1000
        want = shape(expected_figures(window_events, size_s))
        assert_matches(figures(got[key]), want, str(key))
        assert bool(got[key].summary.per_observer) == (kind == "full")
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
        if offer(first, keyed(event), received_ms=i) is Outcome.LATE:
            late.add(event.event_id)
        finals.extend(first.take_finals())
        apply(table, first.take_persist(f"chunk-{i}")[0])
    second = PartitionState(plan, 10**9)
    second.restore(table.items())
    assert second.take_finals() == []
    for subject in {event.subject_id for event in events[:cut]}:  # queries answer the same
        assert second.current("subject", subject) == first.current("subject", subject)
    rest, rest_late = [], set()
    for i, event in enumerate(events[cut:], start=cut):
        if offer(second, keyed(event), received_ms=i) is Outcome.LATE:
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
    assert offer(state, keyed(event), received_ms=0) is Outcome.COUNTED
    assert offer(state, keyed(event), received_ms=599_999) is Outcome.DUPLICATE
    assert offer(state, keyed(event), received_ms=600_000) is Outcome.COUNTED


def test_a_big_flush_journals_its_ids_in_bounded_chunks_that_restore_whole() -> None:
    plan = WindowPlan(SPECS, GRACE_MS)
    state = PartitionState(plan, dedup_ttl_ms=600_000)
    ids = [f"event-{i:05d}-" + "x" * 116 for i in range(5000)]  # 128 characters each
    for i, event_id in enumerate(ids):
        event = Event(event_id, "o1", f"s-{i % 50}", "temp", 1.0, 1_795_780_800_000 + i)
        assert offer(state, keyed(event), received_ms=i) is Outcome.COUNTED

    writes, _ = state.take_persist("flush-1")

    journal = {name: value for name, value in writes.items() if name.startswith('["d"')}
    assert len(journal) == -(-len(ids) // JOURNAL_CHUNK_IDS)
    assert all(value is not None and len(value) < 512 * 1024 for value in journal.values())
    restored = PartitionState(plan, dedup_ttl_ms=600_000)
    restored.restore([(name, value) for name, value in writes.items() if value is not None])
    for i, event_id in enumerate(ids):
        event = Event(event_id, "o1", f"s-{i % 50}", "temp", 1.0, 1_795_780_800_000 + i)
        assert offer(restored, keyed(event), received_ms=6000) is Outcome.DUPLICATE


def test_each_flush_journals_the_ids_seen_since_the_last_one_unless_expired() -> None:
    ttl = 1000
    state = PartitionState(WindowPlan(SPECS, GRACE_MS), dedup_ttl_ms=ttl)
    journaled: list[tuple[str, int]] = []
    received = 0
    for flush, (count, step) in enumerate([(5, 10), (300, 7), (1, 0), (40, 60), (0, 0)]):
        offered = []
        for i in range(count):
            received += step
            event = Event(f"e{flush}-{i}", "o1", "s-1", "temp", 1.0, 1_795_780_800_000 + received)
            assert offer(state, keyed(event), received_ms=received) is Outcome.COUNTED
            offered.append((event.event_id, received))
        writes, _ = state.take_persist(f"flush-{flush}")
        entries = [
            (k, ms)
            for name, value in sorted(writes.items())
            if name.startswith('["d"') and value is not None
            for chunk in (decode(Kind.JOURNAL, value, FULL),)
            if isinstance(chunk, JournalRecord)
            for k, ms in zip(chunk.ids, chunk.received_ms, strict=True)
        ]
        # Expired (received `ttl` or more before the latest) before it was journaled: left out.
        assert entries == [("s" + i, ms) for i, ms in offered if ms > received - ttl]
        journaled += entries
    assert len(journaled) == 5 + 143 + 1 + 17  # what the filter above kept, flush by flush


def test_latest_finals_answer_for_a_day_and_go_within_the_hour_after() -> None:
    state = PartitionState(WindowPlan(SPECS, GRACE_MS), dedup_ttl_ms=0)
    key = ("subject", "s-1", "temp")
    day, hour = LATEST_RETENTION_MS, LATEST_SWEEP_MS
    for minute in range(1, 121):  # a final every minute for two hours: the newest is kept
        end_ms = minute * 60_000
        state.record_final(key, "tumbling:60s", end_ms, b'{"end":%d}' % end_ms)
    state.record_final(key, "hopping:300s/60s", 60_000, b'{"hop":1}')
    tumbling = '["f","subject","s-1","temp","tumbling:60s"]'
    hopping = '["f","subject","s-1","temp","hopping:300s/60s"]'
    gone_at: dict[str, int] = {}
    history = []
    for watermark in range(0, 2 * day, 60_000):
        state.advance(watermark)
        writes, _ = state.take_persist(f"c{watermark}")
        for name, value in writes.items():
            if name in (tumbling, hopping) and value is None:
                gone_at.setdefault(name, watermark)
        history.append((watermark, sorted(state.latest_finals("subject", "s-1"))))

    # Each goes (a tombstone in the changelog) at the first sweep after its window ended a
    # day before the watermark: within the hour after.
    assert day + 120 * 60_000 < gone_at[tumbling] <= day + 120 * 60_000 + hour
    assert day + 60_000 < gone_at[hopping] <= day + 60_000 + hour
    for watermark, finals in history:
        expected = [b'{"end":7200000}'] if watermark < gone_at[tumbling] else []
        expected += [b'{"hop":1}'] if watermark < gone_at[hopping] else []
        assert finals == sorted(expected), watermark


def test_subject_and_group_copies_are_not_duplicates_of_each_other() -> None:
    state = PartitionState(WindowPlan(SPECS, GRACE_MS), dedup_ttl_ms=600_000)
    event = Event("e1", "o1", "s-1", "temp", 1.0, 1_795_780_800_000, group_id="g")
    assert offer(state, keyed(event, "subject"), received_ms=0) is Outcome.COUNTED
    assert offer(state, keyed(event, "group"), received_ms=0) is Outcome.COUNTED
    assert state.key_count == 2


def test_changes_are_coalesced_per_key_and_window() -> None:
    plan = WindowPlan([WindowSpec("tumbling", 60, 60)], GRACE_MS)
    state = PartitionState(plan, dedup_ttl_ms=600_000)
    for i in range(10):
        event = Event(f"e{i}", "o1", "s-1", "temp", float(i), 1_795_780_800_000 + i)
        offer(state, keyed(event), received_ms=i)
    changes = list(state.take_changes())
    assert [(c.final, c.summary.count) for c in changes] == [(False, 10)]
    assert list(state.take_changes()) == []


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), every=st.integers(1, 40))
def test_changes_and_queries_give_the_figures_of_each_open_window_so_far(
    seed: int, every: int
) -> None:
    """Changes (and queries) merge the nested windows of a key along one chain: each
    must still say what its own window holds."""
    events = stream(seed, 250, 20_000, late_share=0.02)
    state = PartitionState(WindowPlan(SPECS, GRACE_MS), 10**9)
    counted: list[Event] = []
    for i, event in enumerate(events):
        if offer(state, keyed(event), received_ms=i) is Outcome.COUNTED:
            counted.append(event)
        state.take_finals()
        if i % every:
            continue
        buckets = group_by_window(counted, SPECS)
        changes = list(state.take_changes())
        queried = [e for s in ("s-1", "s-2") for e in state.current("subject", s)]
        assert {(e.key, e.window) for e in queried} >= {(e.key, e.window) for e in changes}
        for emission in changes + queried:
            window = emission.window
            key = (*emission.key, window.spec.type, window.start_ms, window.end_ms)
            want = expected_figures(buckets[key], window.spec.size_s)
            assert_matches(figures(emission), want, str(key))


BASIC = AGGREGATE_KINDS["basic"]
FULL = AGGREGATE_KINDS["full"]


def persisted_run(state: PartitionState, events: list[Event]) -> dict[str, bytes]:
    """Offer `events`, applying every persist to a table, as the changelog would hold it."""
    table: dict[str, bytes] = {}
    for i, event in enumerate(events):
        offer(state, keyed(event), received_ms=i)
        state.take_finals()
        apply(table, state.take_persist(f"chunk-{i}")[0])
    return table


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), cut=st.integers(1, 299))
def test_state_of_full_aggregates_restores_as_basic_exactly(seed: int, cut: int) -> None:
    events = stream(seed, 300, 20_000, late_share=0.0)
    plan = WindowPlan(SPECS, GRACE_MS)
    straight, _ = run(PartitionState(plan, 10**9, aggregates=BASIC), events)

    table = persisted_run(PartitionState(plan, 10**9, aggregates=FULL), events[:cut])
    switched = PartitionState(plan, 10**9, aggregates=BASIC)
    switched.restore(table.items())
    rest, _ = run(switched, events[cut:])

    # Finals sent before the switch were full ones; those after equal a basic run.
    uninterrupted = by_window(straight)
    for key, emission in by_window(rest).items():
        assert figures(emission) == figures(uninterrupted[key]), key


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), cut=st.integers(1, 299))
def test_state_of_basic_aggregates_restores_as_full_with_only_basic_figures(
    seed: int, cut: int
) -> None:
    """After a switch to full, a window that began under basic gives its basic figures,
    exact, and null for the rest (never figures of a part of its values); a window
    wholly after the switch gives every figure."""
    events = stream(seed, 300, 20_000, late_share=0.0)
    plan = WindowPlan(SPECS, GRACE_MS)
    expected, _ = reference(events, list(SPECS))
    table = persisted_run(PartitionState(plan, 10**9, aggregates=BASIC), events[:cut])
    switched = PartitionState(plan, 10**9, aggregates=FULL)
    switched.restore(table.items())
    rest, _ = run(switched, events[cut:])

    before = {e.event_id for e in events[:cut]}
    for key, emission in by_window(rest).items():
        window_events = expected[key]
        want = expected_figures(window_events, (key[4] - key[3]) // 1000)
        if any(e.event_id in before for e in window_events):
            want = basic_only(want)
        assert_matches(figures(emission), want, str(key))


def test_a_ttl_of_zero_turns_dedup_off_and_drops_the_journal() -> None:
    plan = WindowPlan(SPECS, GRACE_MS)
    event = Event("e1", "o1", "s-1", "temp", 1.0, 1_795_780_800_000)
    remembering = PartitionState(plan, dedup_ttl_ms=600_000)
    assert offer(remembering, keyed(event), received_ms=0) is Outcome.COUNTED
    writes, _ = remembering.take_persist("flush-1")
    journal = sorted(name for name in writes if name.startswith('["d"'))
    assert journal

    forgetting = PartitionState(plan, dedup_ttl_ms=0)
    forgetting.restore([(name, value) for name, value in writes.items() if value is not None])
    assert offer(forgetting, keyed(event), received_ms=1) is Outcome.COUNTED
    assert offer(forgetting, keyed(event), received_ms=2) is Outcome.COUNTED
    windows = len(windows_holding(event.observed_ms, list(SPECS)))  # 1 tumbling, 5 hopping
    assert [c.summary.count for c in forgetting.take_changes()] == [3] * windows
    writes, _ = forgetting.take_persist("flush-2")
    assert sorted(name for name, value in writes.items() if name.startswith('["d"')) == journal
    assert all(writes[name] is None for name in journal)  # deleted from the changelog


def test_without_anomaly_detection_no_baselines_are_kept_and_old_ones_are_deleted() -> None:
    plan = WindowPlan(SPECS, GRACE_MS)
    config = AnomalyConfig(alpha=0.1, warmup=3, warning_z=3.0, critical_z=5.0, cooldown_ms=0)
    detecting = PartitionState(plan, dedup_ttl_ms=600_000, anomaly=config)
    values = [10.0, 10.5, 9.5, 10.0, 10.2, 9.8, 80.0]
    for i, value in enumerate(values):
        event = Event(f"e{i}", "o1", "s-1", "temp", value, 1_795_780_800_000 + i)
        offer(detecting, keyed(event), received_ms=i)
    assert [d.value for d in detecting.take_anomalies()] == [80.0]
    writes, _ = detecting.take_persist("flush-1")
    baselines = sorted(name for name in writes if name.startswith('["b"'))
    assert baselines

    plain = PartitionState(plan, dedup_ttl_ms=600_000, anomaly=None)
    plain.restore([(name, value) for name, value in writes.items() if value is not None])
    spike = Event("e-spike", "o1", "s-1", "temp", 500.0, 1_795_780_800_100)
    assert offer(plain, keyed(spike), received_ms=10) is Outcome.COUNTED
    assert plain.take_anomalies() == []
    writes, _ = plain.take_persist("flush-2")
    assert sorted(name for name in writes if name.startswith('["b"')) == baselines
    assert all(writes[name] is None for name in baselines)  # deleted from the changelog


def test_changes_skip_panes_that_closed_since_they_were_touched() -> None:
    plan = WindowPlan([WindowSpec("tumbling", 60, 60)], GRACE_MS)
    state = PartitionState(plan, dedup_ttl_ms=600_000)
    start = 1_795_780_800_000  # a minute boundary
    for i, offset_ms in enumerate((1_000, 61_000, 95_000)):  # the last closes the first
        offer(state, keyed(Event(f"e{i}", "o1", "s-1", "temp", 1.0, start + offset_ms)), i)
    assert [(f.window.start_ms, f.summary.count) for f in state.take_finals()] == [(start, 1)]
    changes = list(state.take_changes())
    assert [(c.window.start_ms, c.summary.count) for c in changes] == [(start + 60_000, 2)]


@pytest.mark.parametrize("kind", ["full", "basic"])
def test_a_pane_of_one_value_is_kept_as_the_value_until_a_second_one(kind: str) -> None:
    """Memory: 100,000 keys that each saw one value hold 100,000 `OneValue`s, not
    aggregates; restored from the changelog they are kept so again."""
    plan = WindowPlan(SPECS, GRACE_MS)
    aggregates = AGGREGATE_KINDS[kind]
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
    events = [Event(f"e{i}", "o1", f"s{i}", "temp", float(i), t0 + i) for i in range(3)]
    events.append(Event("e3", "o2", "s0", "temp", 9.5, t0 + 10))  # s0's second value
    state = PartitionState(plan, 10**9, aggregates=aggregates)
    table = persisted_run(state, events)

    def forms(s: PartitionState) -> dict[str, type]:
        return {
            key[1]: type(pane) for key, ks in s.panes.keys.items() for pane in ks.panes.values()
        }

    assert forms(state) == {"s0": aggregates, "s1": OneValue, "s2": OneValue}
    restored = PartitionState(plan, 10**9, aggregates=aggregates)
    restored.restore(table.items())
    assert forms(restored) == forms(state)
    for subject in ("s0", "s1", "s2"):
        assert restored.current("subject", subject) == state.current("subject", subject)
        want = expected_figures([e for e in events if e.subject_id == subject], 60)
        [tumbling] = [
            e for e in state.current("subject", subject) if e.window.spec.name == "tumbling:60s"
        ]
        got = figures(tumbling)
        if kind == "basic":
            want = basic_only(want)
        assert_matches(got, want, subject)


def test_two_sources_far_apart_in_event_time_close_on_the_slower_one() -> None:
    """Source 1 is read hours of event time behind source 0 (a backlog): nothing is late,
    and every final equals the reference of all events together."""
    plan = WindowPlan(SPECS, GRACE_MS)
    state = PartitionState(plan, dedup_ttl_ms=10**9)
    rng = random.Random(7)
    start = 1_795_780_800_000
    ahead = [
        Event(f"a{i}", "o1", "s-1", "temp", rng.random(), start + 7_200_000 + i * 900)
        for i in range(400)
    ]
    behind = [
        Event(f"b{i}", "o2", "s-1", "temp", rng.random(), start + i * 900) for i in range(400)
    ]
    finals: list[Emission] = []
    for i in range(0, 400, 50):  # interleaved batches: source 0 always far ahead
        for source, events in ((0, ahead[i : i + 50]), (1, behind[i : i + 50])):
            for event in events:
                assert state.offer(keyed(event), received_ms=i) is Outcome.COUNTED
            mark = max(e.observed_ms for e in events)
            state.observe(SourceReport(source, mark, 2), now_ms=i)
            finals.extend(state.take_finals())
    for source in (0, 1):
        state.observe(SourceReport(source, FAR_FUTURE, 2), now_ms=0)
    finals.extend(state.take_finals())
    # All events together, in event-time order, are one in-order stream: none is late.
    expected, late = reference(sorted(ahead + behind, key=lambda e: e.observed_ms), list(SPECS))
    assert not late
    got = by_window(finals)
    assert set(got) == set(expected)
    for key, window_events in expected.items():
        want = expected_figures(window_events, (key[4] - key[3]) // 1000)
        assert_matches(figures(got[key]), want, str(key))


def test_a_window_closing_between_flushes_publishes_its_last_updates_as_a_change() -> None:
    plan = WindowPlan([WindowSpec("tumbling", 60, 60)], GRACE_MS)
    state = PartitionState(plan, dedup_ttl_ms=600_000, closing_changes=True)
    start = 1_795_780_800_000
    offer(state, keyed(Event("e0", "o1", "s-1", "temp", 1.0, start + 1_000)), 0)
    assert [c.summary.count for c in state.take_changes()] == [1]
    offer(state, keyed(Event("e1", "o1", "s-1", "temp", 3.0, start + 2_000)), 1)  # not taken
    offer(state, keyed(Event("e2", "o1", "s-1", "temp", 5.0, start + 95_000)), 2)  # closes it
    [final] = state.take_finals()
    [last] = state.take_closing_changes()
    assert (last.final, last.window, last.summary) == (False, final.window, final.summary)
    assert (final.summary.count, final.summary.sum) == (2, 4.0)
    # A window with no update since its last change has no closing change.
    assert [c.window.start_ms for c in state.take_changes()] == [start + 60_000]
    offer(state, keyed(Event("e3", "o1", "s-1", "temp", 5.0, start + 200_000)), 3)
    assert [f.window.start_ms for f in state.take_finals()] == [start + 60_000]
    assert state.take_closing_changes() == []

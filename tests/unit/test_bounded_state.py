"""State bounded by count as well as by time: observers kept per window, the key budget,
dedup ids, sketch bins, baselines and standings that expire, changelog records and dead
letters below the size a topic accepts, and one key's failure kept to that key."""

from __future__ import annotations

import math
import random
from typing import Any

import orjson
import pytest

import agents.rolling.changelog as changelog
from agents.anomaly import AnomalyConfig, BaselineState
from agents.deadletters import LETTER_MAX_BYTES, build_dead_letter
from agents.observers.book import ObserverBook, Score
from agents.rolling import Outcome, PartitionState, WindowPlan
from agents.rolling.aggregate import Aggregate, Summary
from agents.rolling.distinct import DistinctCounter
from agents.rolling.sketch import MAX_BINS, QuantileSketch
from models import DeadLetterReason, DecodeError, decode_observation, dumps
from models.fast_decode import decode_keyed
from models.keyed import KeyedObservation, SourceReport
from streams.runtime.windows import parse_windows

BASE_MS = 1_795_780_800_000  # a multiple of an hour
PLAN = WindowPlan(parse_windows("tumbling:60s"), 0)


def record(
    subject: str, event_id: str, observed_ms: int, value: float = 1.0, observer: str = "o1"
) -> KeyedObservation:
    return KeyedObservation(
        "subject", subject, event_id, observer, subject, None, "temp", value, observed_ms,
        None, 0, 0, 0,
    )  # fmt: skip


def finals_after(state: PartitionState, watermark_ms: int) -> dict[str, Summary]:
    state.observe(SourceReport(0, watermark_ms, 1), now_ms=0)
    return {e.key[1]: e.summary for e in state.take_finals()}


# -- observers per window -------------------------------------------------------------------


def test_a_window_keeps_the_figures_of_at_most_the_bound_and_counts_every_observer() -> None:
    kind = Aggregate.capped(3)
    state = PartitionState(PLAN, dedup_ttl_ms=0, aggregates=kind)
    values = [float(v) for v in range(10)]
    for i, v in enumerate(values):
        state.offer(record("s", f"e{i}", BASE_MS + i, v, observer=f"o{i}"), received_ms=0)
    summary = finals_after(state, BASE_MS + 60_000)["s"]
    assert summary.count == 10 and summary.sum == math.fsum(values)
    assert summary.observers == 10  # estimated past the bound (exact at this size)
    assert summary.observers_truncated
    assert [o for o, *_ in summary.per_observer] == ["o0", "o1", "o2"]  # the first kept


def test_panes_merged_past_the_bound_and_restored_count_every_observer() -> None:
    kind = Aggregate.capped(4)
    plan = WindowPlan(parse_windows("tumbling:120s,hopping:120s/60s"), 0)
    state = PartitionState(plan, dedup_ttl_ms=0, aggregates=kind)
    for i in range(3):  # pane 1: o0..o2; pane 2: o3..o5 and o0
        state.offer(record("s", f"a{i}", BASE_MS + i, observer=f"o{i}"), received_ms=0)
        state.offer(record("s", f"b{i}", BASE_MS + 60_000 + i, observer=f"o{i + 3}"), 0)
    state.offer(record("s", "c", BASE_MS + 60_500, observer="o0"), received_ms=0)
    writes, _ = state.take_persist("c1")
    restored = PartitionState(plan, dedup_ttl_ms=0, aggregates=kind)
    restored.restore((k, v) for k, v in writes.items() if v is not None)
    for each in (state, restored):
        finals = [e.summary for e in _all_finals(each, BASE_MS + 120_000)]
        whole = [s for s in finals if s.count == 7]
        assert len(whole) == 2  # tumbling:120s and the hopping window of both panes
        for summary in whole:
            assert summary.observers == 6 and summary.observers_truncated
            assert len(summary.per_observer) == 4


def _all_finals(state: PartitionState, watermark_ms: int) -> list[Any]:
    state.observe(SourceReport(0, watermark_ms, 1), now_ms=0)
    return state.take_finals()


def test_the_distinct_counter_is_within_three_standard_errors() -> None:
    for n in (200, 5_000, 50_000):
        counter = DistinctCounter()
        counter.add_all(f"observer-{n}-{i}" for i in range(n))
        counter.add_all(f"observer-{n}-{i}" for i in range(0, n, 7))  # seen again
        assert abs(counter.estimate() - n) <= 3 * 0.033 * n, n
        assert DistinctCounter.from_state(counter.to_state()).estimate() == counter.estimate()


# -- the key budget -------------------------------------------------------------------------


@pytest.mark.parametrize("dedup_ttl_ms", [0, 600_000])
def test_a_new_key_beyond_the_budget_is_over_capacity_and_known_keys_still_count(
    dedup_ttl_ms: int,
) -> None:
    state = PartitionState(PLAN, dedup_ttl_ms=dedup_ttl_ms, max_keys=3)
    outcomes = [state.offer(record(f"s{i}", f"e{i}", BASE_MS), 0) for i in range(5)]
    assert outcomes == [Outcome.COUNTED] * 3 + [Outcome.OVER_CAPACITY] * 2
    assert state.offer(record("s1", "e-again", BASE_MS + 1), 0) is Outcome.COUNTED
    assert state.key_count == 3
    finals = finals_after(state, BASE_MS + 60_000)
    assert {s: f.count for s, f in finals.items()} == {"s0": 1, "s1": 2, "s2": 1}
    # The closed windows freed their keys: a refused subject is accepted now, and its
    # refused event id was not remembered (it counts when it comes again).
    assert state.key_count == 0
    assert state.offer(record("s3", "e3", BASE_MS + 60_000), 0) is Outcome.COUNTED


# -- dedup ids ------------------------------------------------------------------------------


def test_dedup_forgets_the_oldest_ids_past_its_cap_also_after_a_restore() -> None:
    state = PartitionState(PLAN, dedup_ttl_ms=10**9, dedup_max_ids=5)
    for i in range(8):
        assert state.offer(record("s", f"e{i}", BASE_MS + i), received_ms=i) is Outcome.COUNTED
    assert state.dedup_evicted == 3
    assert state.offer(record("s", "e7", BASE_MS), received_ms=9) is Outcome.DUPLICATE
    assert state.offer(record("s", "e0", BASE_MS), received_ms=9) is Outcome.COUNTED  # forgotten
    writes, _ = state.take_persist("c1")
    restored = PartitionState(PLAN, dedup_ttl_ms=10**9, dedup_max_ids=2)
    restored.restore((k, v) for k, v in writes.items() if v is not None)
    assert restored.offer(record("s", "e0", BASE_MS), 10) is Outcome.DUPLICATE  # newest kept
    assert restored.offer(record("s", "e6", BASE_MS), 10) is Outcome.COUNTED  # trimmed


# -- sketch bins ----------------------------------------------------------------------------


def test_the_sketch_keeps_at_most_max_bins_a_sign_and_every_count() -> None:
    rng = random.Random(3)
    sketch, other = QuantileSketch(), QuantileSketch()
    values = [rng.choice((-1, 1)) * 10 ** rng.uniform(-300, 150) for _ in range(40_000)]
    for i, v in enumerate(values):
        (sketch if i % 2 else other).add(v)
    sketch.merge(other)
    assert len(sketch.positive) <= MAX_BINS and len(sketch.negative) <= MAX_BINS
    assert sketch.count == len(values)
    top = sorted(values)[round(0.99 * (len(values) - 1))]  # the high end stays exact to 1%
    assert sketch.quantile(0.99) == pytest.approx(top, rel=0.011)
    assert QuantileSketch.from_state(sketch.to_state()).count == len(values)


# -- changelog records below the limit -------------------------------------------------------


def test_a_key_larger_than_a_record_is_written_in_parts_and_restored_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(changelog, "RECORD_MAX_BYTES", 2_000)
    plan = WindowPlan(parse_windows("tumbling:60s"), 3_600_000)  # an hour of panes open
    state = PartitionState(plan, dedup_ttl_ms=0, aggregates=Aggregate.capped(50))
    for minute in range(12):
        for i in range(4):
            t = BASE_MS + minute * 60_000 + i
            state.offer(record("s", f"e{minute}-{i}", t, float(i), f"observer-{i}"), 0)
    writes, _ = state.take_persist("c1")
    parts = {k: v for k, v in writes.items() if orjson.loads(k)[0] == "a"}
    assert len(parts) > 1 and all(v is not None and len(v) <= 2_000 for v in parts.values())
    restored = PartitionState(plan, dedup_ttl_ms=0, aggregates=Aggregate.capped(50))
    restored.restore((k, v) for k, v in writes.items() if v is not None)
    expected = [(e.window, e.summary) for e in _all_finals(state, BASE_MS + 10**8)]
    assert [(e.window, e.summary) for e in _all_finals(restored, BASE_MS + 10**8)] == expected
    # All its windows closed: every part of the key is deleted.
    writes, _ = restored.take_persist("c2")
    assert {k for k, v in writes.items() if orjson.loads(k)[0] == "a" and v is None} == set(parts)


def test_a_dead_letter_of_a_huge_message_holds_its_first_bytes_below_the_limit() -> None:
    value = ("\x01" * 400_000 + "é" * 300_000).encode()  # 6 bytes a character escaped
    key = b"\xff" * 700_000  # base64
    letter = build_dead_letter(
        topic="observations", partition=3, offset=9, key=key, value=value,
        reason=DeadLetterReason.TOO_LARGE, errors=[],
    )  # fmt: skip
    assert len(dumps(letter)) <= LETTER_MAX_BYTES  # the limit when the topic's is not known
    assert letter.value is not None and letter.key is not None
    assert value.startswith(letter.value.encode()) and letter.value_bytes == len(value)
    assert letter.key_bytes == len(key) and letter.key_encoding == "base64"
    small = build_dead_letter(
        topic="observations", partition=3, offset=9, key=b"k", value=b"v",
        reason=DeadLetterReason.INVALID, errors=[],
    )  # fmt: skip
    assert (small.key, small.value, small.key_bytes, small.value_bytes) == ("k", "v", None, None)


@pytest.mark.parametrize("value", [1e151, -1.7e308])
def test_a_value_whose_window_figures_overflow_is_invalid_on_both_paths(value: float) -> None:
    raw = orjson.dumps(
        {"event_id": "e", "observer_id": "o", "subject_id": "s", "metric": "m",
         "value": value, "observed_at": BASE_MS}
    )  # fmt: skip
    for decode in (
        lambda: decode_observation(raw, max_bytes=65_536),
        lambda: decode_keyed(raw, max_bytes=65_536, partition=0, offset=0, timestamp_ms=0),
    ):
        with pytest.raises(DecodeError) as caught:
            decode()
        assert caught.value.reason is DeadLetterReason.INVALID
        assert [e.field for e in caught.value.errors] == ["value"]


# -- history that expires --------------------------------------------------------------------


def test_baselines_not_updated_for_their_ttl_are_forgotten() -> None:
    config = AnomalyConfig(
        alpha=0.1, warmup=3, warning_z=3, critical_z=5, cooldown_ms=0, history_ttl_ms=1_000
    )
    baselines = BaselineState(config)
    baselines.offer(record("old", "e1", BASE_MS))
    baselines.offer(record("new", "e2", BASE_MS + 900))
    baselines.snapshot()
    baselines.expire(BASE_MS + 1_500)
    assert baselines.snapshot() == {("old", "temp"): None}
    assert len(baselines) == 1
    # A baseline written before it kept its time starts its TTL at the first sweep.
    legacy = BaselineState(config)
    written = orjson.dumps([5, 1.0, 0.1, None, 0])
    decoded = changelog.decode(changelog.Kind.BASELINE, written, Aggregate)
    assert isinstance(decoded, changelog.BaselineRecord) and decoded.seen_ms is None
    legacy.restore([(("s", "temp"), decoded)])
    legacy.expire(BASE_MS)
    legacy.expire(BASE_MS + 1_000)
    assert len(legacy) == 1
    legacy.expire(BASE_MS + 1_001)
    assert len(legacy) == 0


def test_observer_standings_not_scored_for_their_ttl_are_forgotten() -> None:
    book = ObserverBook(drift_alpha=0.2, stale_windows=3, history_ttl_ms=120_000)
    book.score(Score("o-old", 1.0, False, BASE_MS, 60_000, BASE_MS))
    book.score(Score("o-new", 1.0, False, BASE_MS + 100_000, 60_000, BASE_MS))
    assert book.take_expired() == []
    book.score(Score("o-new", 1.0, False, BASE_MS + 180_000, 60_000, BASE_MS))
    assert book.take_expired() == ["o-old"]
    assert set(book.observers) == {"o-new"}


# -- one key's failure stays that key's ------------------------------------------------------


class _FailsAbove100(Aggregate):
    __slots__ = ()

    def finish(self, per_observer: bool = True) -> Summary:
        if self.max > 100:
            msg = "this window cannot be summarised"
            raise ArithmeticError(msg)
        return super().finish(per_observer)


def test_a_window_that_cannot_be_summarised_fails_alone() -> None:
    state = PartitionState(PLAN, dedup_ttl_ms=0, aggregates=_FailsAbove100)
    for i, (subject, value) in enumerate([("bad", 500.0), ("bad", 1.0), ("good", 2.0)] * 2):
        state.offer(record(subject, f"e{i}", BASE_MS + i, value), received_ms=0)
    finals = finals_after(state, BASE_MS + 60_000)
    assert {s: f.count for s, f in finals.items()} == {"good": 2}
    [(stage, key, exc)] = state.take_failures()
    assert (stage, key[1], type(exc)) == ("close", "bad", ArithmeticError)
    assert state.key_count == 0  # its panes went with the window

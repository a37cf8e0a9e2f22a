"""The aggregate and its sketch: exact figures, and merging in any split equals all at once."""

from __future__ import annotations

import itertools
import math
import statistics

import orjson
import pytest
from ddsketch import DDSketch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.rolling import Aggregate, BasicAggregate, QuantileSketch
from agents.rolling.aggregate import OneValue, PaneAggregate

values = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
points = st.lists(
    st.tuples(values, st.integers(0, 10**6), st.sampled_from(["o1", "o2", "o3"])),
    min_size=1,
    max_size=60,
)


def build(rows: list[tuple[float, int, str]], offset: int = 0) -> Aggregate:
    agg = Aggregate()
    for i, (value, t, observer) in enumerate(rows):
        agg.add(value, t, f"e{offset + i:05d}", observer)
    return agg


def exact_quantile(data: list[float], q: float) -> float:
    """DDSketch's rank rule on the exact sorted data."""
    return sorted(data)[math.floor(q * (len(data) - 1))]


@settings(max_examples=300, deadline=None)
@given(rows=points, cuts=st.lists(st.integers(0, 60), max_size=5))
def test_merging_any_split_equals_aggregating_at_once(
    rows: list[tuple[float, int, str]], cuts: list[int]
) -> None:
    whole = build(rows)
    bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
    parts = [build(rows[a:b], offset=a) for a, b in itertools.pairwise(bounds)]
    merged = Aggregate.merged(parts)
    a, b = whole.finish(), merged.finish()
    assert (a.count, a.sum, a.min, a.max) == (b.count, b.sum, b.min, b.max)
    assert (a.first_value, a.first_ms, a.last_value, a.last_ms) == (
        b.first_value,
        b.first_ms,
        b.last_value,
        b.last_ms,
    )
    assert a.observers == b.observers
    assert merged.sketch.positive == whole.sketch.positive
    assert merged.sketch.negative == whole.sketch.negative
    assert merged.sketch.zero == whole.sketch.zero
    assert (a.p50, a.p90, a.p99) == (b.p50, b.p90, b.p99)
    assert b.mean == pytest.approx(a.mean, rel=1e-9, abs=1e-6)
    if a.stddev is None:
        assert b.stddev is None
    else:
        assert b.stddev == pytest.approx(a.stddev, rel=1e-9, abs=1e-6)


@settings(max_examples=300, deadline=None)
@given(rows=points)
def test_figures_equal_ground_truth(rows: list[tuple[float, int, str]]) -> None:
    summary = build(rows).finish()
    data = [v for v, _, _ in rows]
    assert summary.count == len(data)
    assert summary.sum == math.fsum(data)
    assert summary.mean == math.fsum(data) / len(data)
    assert (summary.min, summary.max) == (min(data), max(data))
    keyed = sorted((t, f"e{i:05d}", v) for i, (v, t, _) in enumerate(rows))
    assert (summary.first_ms, summary.first_value) == (keyed[0][0], keyed[0][2])
    assert (summary.last_ms, summary.last_value) == (keyed[-1][0], keyed[-1][2])
    assert summary.observers == len({o for _, _, o in rows})
    if len(data) > 1:
        assert summary.stddev == pytest.approx(statistics.stdev(data), rel=1e-9, abs=1e-6)
    else:
        assert summary.stddev is None
    for q, got in ((0.5, summary.p50), (0.9, summary.p90), (0.99, summary.p99)):
        expected = exact_quantile(data, q)
        assert abs(got - expected) <= 0.01 * abs(expected) + 1e-300


def test_state_round_trip_is_lossless() -> None:
    agg = build([(1.5, 10, "o1"), (-2.25, 5, "o2"), (0.0, 20, "o1"), (1e-3, 7, "o3")])
    again = Aggregate.from_state(agg.to_state())
    assert again.finish() == agg.finish()
    assert again.to_state() == agg.to_state()


def test_sketch_matches_the_ddsketch_library() -> None:
    data = [((i * 7919) % 1000 - 300) / 7.0 for i in range(2000)]
    ours, theirs = QuantileSketch(), DDSketch(relative_accuracy=0.01)
    for v in data:
        ours.add(v)
        theirs.add(v)
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0):
        assert ours.quantile(q) == pytest.approx(theirs.get_quantile_value(q), rel=1e-12)


def test_empty_aggregate_has_no_summary() -> None:
    with pytest.raises(ValueError, match="empty"):
        Aggregate().finish()


@settings(max_examples=400, deadline=None)
@given(
    data=st.one_of(
        st.lists(values, min_size=1, max_size=80),
        # no negative value (the common case, its own path), zeros and repeats likely
        st.lists(st.sampled_from([0.0, 1e-320, 0.5, 1.0, 3.0, 1e6]), min_size=1, max_size=80),
        st.lists(st.floats(0, 1e9, allow_nan=False), min_size=1, max_size=80),
    )
)
def test_quantiles_at_once_equal_one_by_one(data: list[float]) -> None:
    sketch = QuantileSketch()
    for v in data:
        sketch.add(v)
    qs = (0.0, 0.5, 0.9, 0.99, 1.0)
    assert sketch.quantiles(qs) == tuple(sketch.quantile(q) for q in qs)


def build_basic(rows: list[tuple[float, int, str]], offset: int = 0) -> BasicAggregate:
    agg = BasicAggregate()
    for i, (value, t, observer) in enumerate(rows):
        agg.add(value, t, f"e{offset + i:05d}", observer)
    return agg


@settings(max_examples=300, deadline=None)
@given(rows=points, cuts=st.lists(st.integers(0, 60), max_size=5))
def test_basic_figures_equal_ground_truth_in_any_split(
    rows: list[tuple[float, int, str]], cuts: list[int]
) -> None:
    bounds = sorted({0, len(rows), *(c for c in cuts if c <= len(rows))})
    parts = [build_basic(rows[a:b], offset=a) for a, b in itertools.pairwise(bounds)]
    data = [v for v, _, _ in rows]
    total = math.fsum(data)
    for summary in (build_basic(rows).finish(), BasicAggregate.merged(parts).finish()):
        assert (summary.count, summary.sum, summary.mean) == (len(data), total, total / len(data))
        assert (summary.min, summary.max) == (min(data), max(data))
        times = [t for _, t, _ in rows]
        assert (summary.first_ms, summary.last_ms) == (min(times), max(times))
        assert (summary.stddev, summary.p50, summary.first_value, summary.observers) == (
            None,
            None,
            None,
            None,
        )
        assert summary.per_observer == ()


@settings(max_examples=100, deadline=None)
@given(rows=points)
def test_each_kind_restores_the_others_state(rows: list[tuple[float, int, str]]) -> None:
    full, basic = build(rows), build_basic(rows)
    assert BasicAggregate.from_state(full.to_state()).finish() == basic.finish()
    restored = Aggregate.from_state(basic.to_state())
    assert restored.basic_only
    assert restored.finish() == basic.finish()
    restored.add(1.0, 0, "e-new", "o9")  # later values count, the figures stay basic
    assert restored.finish() == build_basic([*rows, (1.0, 0, "o9")]).finish()
    merged = Aggregate.merged([full, restored])
    assert (
        merged.finish()
        == BasicAggregate.merged([basic, build_basic([*rows, (1.0, 0, "o9")])]).finish()
    )
    assert Aggregate.from_state(restored.to_state()).finish() == restored.finish()


def test_an_empty_basic_aggregate_has_no_summary() -> None:
    with pytest.raises(ValueError, match="empty"):
        BasicAggregate().finish()


@settings(max_examples=500, deadline=None)
@given(value=st.floats(min_value=1e-300, max_value=1e300, allow_nan=False))
def test_the_inlined_bucket_key_is_the_mappings(value: float) -> None:
    from agents.rolling.sketch import _MAPPING

    for v in (value, -value):
        sketch = QuantileSketch()
        sketch.add(v)
        assert (sketch.positive or sketch.negative) == {_MAPPING.key(abs(v)): 1}


@settings(max_examples=300, deadline=None)
@given(
    value=values,
    t=st.integers(0, 10**13),
    event_id=st.text(max_size=20),
    observer=st.text(min_size=1, max_size=10),
    rows=points,
)
@pytest.mark.parametrize("kind", [Aggregate, BasicAggregate])
def test_one_value_stands_for_the_aggregate_of_it(
    kind: type[PaneAggregate],
    value: float,
    t: int,
    event_id: str,
    observer: str,
    rows: list[tuple[float, int, str]],
) -> None:
    one = OneValue(value, t, event_id, observer)
    added = kind()
    added.add(value, t, event_id, observer)
    grown = kind.merged([one])
    assert grown.to_state() == added.to_state()
    assert grown.finish() == added.finish()

    # Its changelog state restores as the one value, whose aggregate gives the state back.
    restored = OneValue.of_state(added.to_state(), kind)
    assert restored is not None
    assert kind.merged([restored]).to_state() == added.to_state()

    # Among other parts it counts as its aggregate would (mean and M2 by Welford's step
    # instead of Chan's merge: equal to rounding).
    others = build(rows) if kind is Aggregate else build_basic(rows)
    a, b = kind.merged([others, one]).finish(), kind.merged([others, added]).finish()
    assert a._replace(mean=0.0, stddev=None) == b._replace(mean=0.0, stddev=None)
    assert a.mean == pytest.approx(b.mean, rel=1e-9, abs=1e-6)
    assert (a.stddev is None) == (b.stddev is None)
    if a.stddev is not None:
        assert a.stddev == pytest.approx(b.stddev, rel=1e-9, abs=1e-6)


def test_only_state_of_one_value_restores_as_one_value() -> None:
    two = build([(1.0, 10, "o1"), (2.0, 20, "o1")])
    assert OneValue.of_state(two.to_state(), Aggregate) is None
    one_basic = build_basic([(1.0, 10, "o1")])
    # Basic state under the full kind has no id or observer: it restores as basic_only.
    assert OneValue.of_state(one_basic.to_state(), Aggregate) is None
    assert OneValue.of_state(one_basic.to_state(), BasicAggregate) is not None
    one_full = build([(1.0, 10, "o1")])
    as_basic = OneValue.of_state(one_full.to_state(), BasicAggregate)
    assert as_basic is not None
    assert BasicAggregate.merged([as_basic]).finish() == one_basic.finish()


@settings(max_examples=100, deadline=None)
@given(rows=points, more=points)
def test_an_aggregate_merged_from_a_part_shares_nothing_it_changes(
    rows: list[tuple[float, int, str]], more: list[tuple[float, int, str]]
) -> None:
    # The first merge into an empty aggregate copies; folding more in afterwards must
    # leave the part (a live pane) as it was.
    part = build(rows)
    before = orjson.dumps(part.to_state())  # a snapshot: to_state shares its lists
    grown = Aggregate.merged([part])
    assert orjson.dumps(grown.to_state()) == before
    grown.merge(build(more, offset=len(rows)))
    for value, t, observer in more:
        grown.add(value, t, f"x{t}", observer)
        grown.add(-value, t, f"y{t}", observer)  # negative bins too
    assert orjson.dumps(part.to_state()) == before

"""The changelog codec: every record type round-trips, keys parse back, the values before
versioning decode to the same records, and a version this code does not know is refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agents.rolling.changelog as changelog
from agents.rolling.aggregate import Aggregate, BasicAggregate, OneValue, Pane, PaneAggregate
from agents.rolling.changelog import (
    BaselineRecord,
    ClockRecord,
    JournalRecord,
    Kind,
    LatestFinalRecord,
    PanesRecord,
    decode,
)
from agents.rolling.summaries import aggregate_of

CAPPED = Aggregate.capped(3)  # four observers or more: the observer overflow is kept too
KINDS: list[type[PaneAggregate]] = [CAPPED, BasicAggregate]

values = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
times = st.integers(0, 10**13)
ids = st.text(max_size=129)
rows = st.lists(
    st.tuples(values, times, ids, st.sampled_from(["o1", "o2", "o3", "o4", "o5", "ö6"])),
    min_size=1,
    max_size=12,
)


def pane_of(
    form: str, kind: type[PaneAggregate], points: list[tuple[float, int, str, str]]
) -> Pane:
    """A pane as a state holds it: one value, an aggregate of `kind`, or (full) one restored
    from basic state (`basic_only`)."""
    if form == "one" or len(points) == 1:
        return OneValue(*points[0])
    aggregate = kind()
    for point in points:
        aggregate.add(*point)
    if form == "basic_only" and kind is not BasicAggregate:
        basic = BasicAggregate()
        for point in points:
            basic.add(*point)
        return kind.from_state(basic.to_state())
    return aggregate


panes_of_kind = st.dictionaries(
    st.integers(0, 10**8).map(lambda n: n * 60_000),
    st.tuples(st.sampled_from(["one", "aggregate", "basic_only"]), rows),
    max_size=6,
)


def held(pane: Pane) -> Any:
    """What a pane holds, comparable (its form too)."""
    if isinstance(pane, OneValue):
        return ("one", pane.value, pane.observed_ms, pane.event_id, pane.observer)
    return (type(pane).__name__, getattr(pane, "basic_only", None), pane.to_state())


def written_before(record: PanesRecord, kind: type[PaneAggregate]) -> bytes:
    """The value the code before the codec wrote for these panes."""
    panes = [[p, aggregate_of([a], kind).to_state()] for p, a in record.panes.items()]
    return orjson.dumps([record.closed_until, panes])


@settings(max_examples=200, deadline=None)
@given(
    closed_until=st.none() | times,
    shapes=panes_of_kind,
    kind=st.sampled_from(KINDS),
    restored_as=st.sampled_from(KINDS),
)
def test_panes_round_trip_and_convert_between_kinds_as_before(
    closed_until: int | None,
    shapes: dict[int, tuple[str, list[Any]]],
    kind: type[PaneAggregate],
    restored_as: type[PaneAggregate],
) -> None:
    record = PanesRecord(closed_until, {p: pane_of(f, kind, r) for p, (f, r) in shapes.items()})
    [raw] = changelog.encode_panes(record, kind)
    assert orjson.loads(raw)[0] == "panes/1"
    again = decode(Kind.PANES, raw, kind)
    assert isinstance(again, PanesRecord) and again.closed_until == closed_until
    if kind is CAPPED:  # the kind it was written as: the very panes
        assert {p: held(a) for p, a in again.panes.items()} == {
            p: held(a) for p, a in record.panes.items()
        }
    else:  # ids and observers are not kept: as the aggregate it stands for
        assert {p: held(aggregate_of([a], kind)) for p, a in again.panes.items()} == {
            p: held(aggregate_of([a], kind)) for p, a in record.panes.items()
        }
    # Restored as another kind: what restoring the earlier format gave.
    converted = decode(Kind.PANES, raw, restored_as)
    before = decode(Kind.PANES, written_before(record, kind), restored_as)
    assert isinstance(converted, PanesRecord) and isinstance(before, PanesRecord)
    assert {p: held(a) for p, a in converted.panes.items()} == {
        p: held(a) for p, a in before.panes.items()
    }


def test_a_key_larger_than_a_record_goes_in_parts_of_whole_panes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(changelog, "RECORD_MAX_BYTES", 1_500)
    panes: dict[int, Pane] = {}
    for i in range(40):
        points = [(float(j), i * 60_000 + j, f"e{i}-{j}", f"o{j}") for j in range(i % 3 + 1)]
        panes[i * 60_000] = pane_of("aggregate", CAPPED, points)
    record = PanesRecord(123, panes)
    parts = changelog.encode_panes(record, CAPPED)
    assert len(parts) > 1 and all(len(part) <= 1_500 for part in parts)
    decoded = [decode(Kind.PANES, part, CAPPED) for part in parts]
    assert [r.closed_until for r in decoded if isinstance(r, PanesRecord)] == [123] + [None] * (
        len(parts) - 1
    )
    merged = {p: held(a) for r in decoded if isinstance(r, PanesRecord) for p, a in r.panes.items()}
    assert merged == {p: held(a) for p, a in panes.items()}


@settings(max_examples=200, deadline=None)
@given(
    watermark=st.none() | times,
    sources=st.integers(0, 1000),
    marks=st.dictionaries(st.integers(0, 1000), times, max_size=8),
)
def test_the_clock_round_trips(watermark: int | None, sources: int, marks: dict[int, int]) -> None:
    record = ClockRecord(watermark, sources, marks)
    raw = changelog.encode_clock(record)
    assert orjson.loads(raw)[0] == "clock/3"
    assert decode(Kind.CLOCK, raw, CAPPED) == record


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.tuples(ids, st.integers(0, 10**13)), max_size=50), repeat=st.booleans())
def test_a_journal_chunk_round_trips(entries: list[tuple[str, int]], repeat: bool) -> None:
    if repeat:  # a batch shares one receive time: runs of equal times
        entries = [(key, entries[0][1]) for key, _ in entries]
    record = JournalRecord([k for k, _ in entries], [ms for _, ms in entries])
    raw = changelog.encode_journal(record)
    assert orjson.loads(raw)[0] == "journal/1"
    assert decode(Kind.JOURNAL, raw, CAPPED) == record


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(end_ms=times, document=json_values)
def test_a_latest_final_round_trips_byte_for_byte(end_ms: int, document: Any) -> None:
    record = LatestFinalRecord(end_ms, orjson.dumps(document))
    raw = changelog.encode_latest_final(record)
    assert orjson.loads(raw) == ["final/1", end_ms, document]  # embedded, not a string
    assert decode(Kind.LATEST_FINAL, raw, CAPPED) == record


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(1, 10**9),
    mean=values,
    var=st.floats(min_value=0, max_value=1e12),
    anomaly_ms=st.none() | times,
    rank=st.integers(0, 2),
    seen_ms=st.none() | times,
)
def test_a_baseline_round_trips(
    count: int, mean: float, var: float, anomaly_ms: int | None, rank: int, seen_ms: int | None
) -> None:
    fields = [count, mean, var, anomaly_ms, rank, seen_ms]  # as `BaselineState` keeps it
    raw = changelog.encode_baseline(fields)
    assert orjson.loads(raw)[0] == "baseline/1"
    assert decode(Kind.BASELINE, raw, CAPPED) == BaselineRecord(*fields)


@pytest.mark.parametrize(
    ("kind", "raw", "record"),
    [
        (Kind.CLOCK, b"7000", ClockRecord(7000, 0, {})),  # a bare watermark
        (Kind.CLOCK, b"null", ClockRecord(None, 0, {})),
        (
            Kind.CLOCK,
            b'{"v":2,"watermark":5,"sources":2,"marks":{"0":5,"1":9}}',
            ClockRecord(5, 2, {0: 5, 1: 9}),
        ),
        (Kind.JOURNAL, b'[["sa",1],["gb",2]]', JournalRecord(["sa", "gb"], [1, 2])),
        (Kind.LATEST_FINAL, b'[60000,"{\\"a\\":1}"]', LatestFinalRecord(60000, b'{"a":1}')),
        (Kind.BASELINE, b"[5,1.0,0.1,null,0]", BaselineRecord(5, 1.0, 0.1, None, 0, None)),
        (Kind.BASELINE, b"[5,1.0,0.1,7,2,9]", BaselineRecord(5, 1.0, 0.1, 7, 2, 9)),
        (Kind.PANES, b"[null,[]]", PanesRecord(None, {})),
    ],
)
def test_values_written_before_versions_decode_to_their_records(
    kind: Kind, raw: bytes, record: Any
) -> None:
    assert decode(kind, raw, CAPPED) == record


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (Kind.PANES, b'["panes/2",null,{}]'),  # newer than this code
        (Kind.CLOCK, b'["panes/1",null,{}]'),  # another type's record
        (Kind.PANES, b'["panes/1",null,{"full":[[0,1,2]]}]'),  # a form with fields missing
        (Kind.JOURNAL, b'["journal/1",["a","b"],[[1,1]]]'),  # an id without a time
    ],
)
def test_a_value_this_code_cannot_read_is_refused(kind: Kind, raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"not a version|fields|ids"):
        decode(kind, raw, CAPPED)


def test_keys_name_their_type_and_parse_back_with_shared_names() -> None:
    names: dict[str, str] = {}
    panes = changelog.key_name(Kind.PANES, "subject", "s-1", "temp", 2)
    assert panes == '["a","subject","s-1","temp",2]'
    baseline = changelog.key_name(Kind.BASELINE, "s-1", "temp")
    kind, items = changelog.parse_key(panes, names)
    assert (kind, items) == (Kind.PANES, ["a", "subject", "s-1", "temp", 2])
    _, again = changelog.parse_key(baseline, names)
    assert again[1] is items[2]  # one string for the name in both keys
    assert changelog.parse_key('["z","new"]', names)[0] is None  # a type of newer code

"""The benchmark's ground truth (bench/truth.py), output parsing (bench/outputs.py) and checker
(bench/check.py), on small hand-made inputs whose expected figures are worked out by hand."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from bench.check import account_dead_letters, check
from bench.data import BenchEvent
from bench.outputs import DeadLetter, OutRecord, Row, parse, parse_dead_letter
from bench.roster import CANDIDATES
from bench.truth import Agg, Semantics, Truth, compute, parse_events, semantics_of
from streams.cli.generator import Kind

S = 1_795_773_600_000  # 2026-11-27T10:00:00Z: a multiple of 300 s
MIN = 60_000
TUMBLING = (MIN, MIN)
HOPPING = (5 * MIN, MIN)


def event(
    event_id: str,
    value: float,
    at: int | str,
    *,
    subject: str = "s-1",
    metric: str = "temp",
    group: str | None = None,
    kind: Kind = Kind.VALID,
    observed_ms: int | None = None,
) -> BenchEvent:
    doc: dict[str, Any] = {
        "event_id": event_id,
        "observer_id": "observer-00",
        "subject_id": subject,
        "metric": metric,
        "value": value,
        "observed_at": at,
    }
    if group is not None:
        doc["group_id"] = group
    ms = at if isinstance(at, int) else observed_ms
    assert ms is not None
    return BenchEvent(subject.encode(), json.dumps(doc).encode(), ms, kind, ms)


def invalid(value: bytes) -> BenchEvent:
    return BenchEvent(b"s-1", value, S, Kind.INVALID, None)


def figures(truth: Truth) -> dict[tuple[str, str, str, int, int], tuple[int, float, float, float]]:
    return {wk: (a.count, a.sum, a.min, a.max) for wk, a in truth.aggregates.items()}


def test_tumbling_and_hopping_bounds() -> None:
    events = [event("e1", 1.0, S + MIN - 1), event("e2", 3.0, S + MIN)]
    truth = compute(parse_events(events), Semantics((TUMBLING, HOPPING)))
    # e1 at S+59.999s: tumbling [S, S+60s); hopping windows starting S-240s ... S.
    # e2 at S+60s exactly: tumbling [S+60s, S+120s); hopping S-180s ... S+60s.
    assert figures(truth) == {
        ("subject", "s-1", "temp", S, MIN): (1, 1.0, 1.0, 1.0),
        ("subject", "s-1", "temp", S + MIN, MIN): (1, 3.0, 3.0, 3.0),
        ("subject", "s-1", "temp", S - 4 * MIN, 5 * MIN): (1, 1.0, 1.0, 1.0),
        ("subject", "s-1", "temp", S - 3 * MIN, 5 * MIN): (2, 4.0, 1.0, 3.0),
        ("subject", "s-1", "temp", S - 2 * MIN, 5 * MIN): (2, 4.0, 1.0, 3.0),
        ("subject", "s-1", "temp", S - 1 * MIN, 5 * MIN): (2, 4.0, 1.0, 3.0),
        ("subject", "s-1", "temp", S, 5 * MIN): (2, 4.0, 1.0, 3.0),
        ("subject", "s-1", "temp", S + MIN, 5 * MIN): (1, 3.0, 3.0, 3.0),
    }
    assert truth.counted == 2
    assert truth.newest_ms == S + MIN


def test_rfc3339_times_are_read() -> None:
    events = [event("e1", 2.5, "2026-11-27T11:00:59.999+01:00", observed_ms=S + MIN - 1)]
    truth = compute(parse_events(events), Semantics((TUMBLING,)))
    assert figures(truth) == {("subject", "s-1", "temp", S, MIN): (1, 2.5, 2.5, 2.5)}


def test_a_time_other_than_the_generators_is_a_bench_bug() -> None:
    wrong = replace(event("e1", 1.0, S), observed_ms=S + 1)
    with pytest.raises(ValueError, match="observed_at"):
        parse_events([wrong])


def test_dedup_on_and_off() -> None:
    first = event("e1", 2.0, S + 10)
    again = replace(first, kind=Kind.DUPLICATE)
    parsed = parse_events([first, event("e2", 4.0, S + 20), again])
    key = ("subject", "s-1", "temp", S, MIN)
    on = compute(parsed, Semantics((TUMBLING,), dedup=True))
    off = compute(parsed, Semantics((TUMBLING,), dedup=False))
    assert figures(on) == {key: (2, 6.0, 2.0, 4.0)}
    assert figures(off) == {key: (3, 8.0, 2.0, 4.0)}
    assert (on.counted, off.counted) == (2, 3)


def test_late_events_dropped_or_counted_in_their_old_window() -> None:
    late_at = S - 3 * 3_600_000 + 5
    parsed = parse_events([event("e1", 1.0, S + 5), event("e2", 9.0, late_at, kind=Kind.LATE)])
    dropped = compute(parsed, Semantics((TUMBLING,), drop_late=True))
    kept = compute(parsed, Semantics((TUMBLING,), drop_late=False))
    assert figures(dropped) == {("subject", "s-1", "temp", S, MIN): (1, 1.0, 1.0, 1.0)}
    assert figures(kept) == {
        ("subject", "s-1", "temp", S, MIN): (1, 1.0, 1.0, 1.0),
        ("subject", "s-1", "temp", S - 3 * 3_600_000, MIN): (1, 9.0, 9.0, 9.0),
    }
    assert dropped.newest_ms == kept.newest_ms == S + 5  # a late event is not the stream's


def test_invalid_records_are_excluded() -> None:
    not_json = invalid(b"{not json")
    numeric_string = invalid(json.dumps({"value": "12", "observed_at": S}).encode())
    parsed = parse_events([not_json, event("e1", 1.5, S), numeric_string])
    truth = compute(parsed, Semantics((TUMBLING,)))
    assert figures(truth) == {("subject", "s-1", "temp", S, MIN): (1, 1.5, 1.5, 1.5)}
    assert truth.input_events == 3
    assert truth.counted == 1


def test_group_scope_and_dedup_per_scope() -> None:
    a1 = event("a1", 1.0, S + 1, subject="s-a", group="g")
    b1 = event("b1", 5.0, S + 2, subject="s-b", group="g")
    c1 = event("c1", 7.0, S + 3, subject="s-c")  # no group: subject scope only
    parsed = parse_events([a1, b1, c1, replace(a1, kind=Kind.DUPLICATE)])
    grouped = compute(parsed, Semantics((TUMBLING,), group_scope=True, dedup=True))
    assert figures(grouped) == {
        ("subject", "s-a", "temp", S, MIN): (1, 1.0, 1.0, 1.0),
        ("subject", "s-b", "temp", S, MIN): (1, 5.0, 5.0, 5.0),
        ("subject", "s-c", "temp", S, MIN): (1, 7.0, 7.0, 7.0),
        ("group", "g", "temp", S, MIN): (2, 6.0, 1.0, 5.0),
    }
    assert grouped.counted == 5  # a1 and b1 twice (subject and group), c1 once
    no_dedup = compute(parsed, Semantics((TUMBLING,), group_scope=True, dedup=False))
    assert figures(no_dedup)[("group", "g", "temp", S, MIN)] == (3, 7.0, 1.0, 5.0)
    assert figures(no_dedup)[("subject", "s-a", "temp", S, MIN)] == (2, 2.0, 1.0, 1.0)
    assert no_dedup.counted == 7
    subject_only = compute(parsed, Semantics((TUMBLING,), group_scope=False))
    assert {wk[0] for wk in subject_only.aggregates} == {"subject"}


def test_certainly_closed_windows() -> None:
    # [S, S+60s) is certainly closed once the stream reaches end + 30 s grace + 60 s margin.
    parsed = parse_events([event("e1", 1.0, S), event("e2", 1.0, S + 150_000)])
    closed = compute(parsed, Semantics((TUMBLING,))).closed
    assert closed == {("subject", "s-1", "temp", S, MIN)}
    parsed = parse_events([event("e1", 1.0, S), event("e2", 1.0, S + 149_999)])
    assert compute(parsed, Semantics((TUMBLING,))).closed == set()


def test_candidate_semantics() -> None:
    default = semantics_of(CANDIDATES["insights-default"])
    assert default == Semantics((TUMBLING, HOPPING), group_scope=True, dedup=True)
    minimal = semantics_of(CANDIDATES["insights-min-final"])
    assert minimal == Semantics((TUMBLING,), group_scope=True, dedup=False)
    assert semantics_of(CANDIDATES["quix-final"]) == Semantics((TUMBLING,), drop_late=True)
    assert semantics_of(CANDIDATES["raw-aggregate"]) == Semantics((TUMBLING,), drop_late=False)
    assert semantics_of(CANDIDATES["faust-naive"]) == Semantics((TUMBLING,), drop_late=False)
    assert semantics_of(CANDIDATES["raw-consume"]) is None
    assert semantics_of(CANDIDATES["raw-finals"]) == Semantics((TUMBLING,), drop_late=True)
    assert semantics_of(CANDIDATES["raw-finals-groups"]) == Semantics(
        (TUMBLING,), group_scope=True, drop_late=True
    )


# -- parsing the candidates' records ------------------------------------------------------


def out(value: dict[str, Any], key: bytes | None = b"s-1", offset: int = 0) -> OutRecord:
    return OutRecord(0, offset, key, json.dumps(value).encode())


def test_parse_every_shape() -> None:
    window = {"type": "tumbling", "size_s": 60, "step_s": 60}
    ours = out(
        {
            "scope": "group",
            "subject_id": None,
            "group_id": "g",
            "metric": "temp",
            "final": True,
            "window": {**window, "start": "2026-11-27T10:00:00Z", "end": "2026-11-27T10:01:00Z"},
            "count": 2,
            "sum": 3.0,
            "min": 1.0,
            "max": 2.0,
            "mean": 1.5,
        }
    )
    assert parse(CANDIDATES["insights-default"], ours) == [
        Row("group", "g", "temp", S, MIN, True, 2, 3.0, 1.0, 2.0, 1.5, (0, 0))
    ]
    agg = {"count": 1, "sum": 2.0, "min": 2.0, "max": 2.0, "last_ms": S + 5}
    quix = out({**agg, "start": S, "end": S + MIN, "emitted_ms": 0}, key=b"s-1|temp")
    assert parse(CANDIDATES["quix-final"], quix) == [
        Row("subject", "s-1", "temp", S, MIN, True, 1, 2.0, 2.0, 2.0, None, (0, 0))
    ]
    assert parse(CANDIDATES["quix-current"], quix)[0].final is False
    merged = out(
        {
            "subject_id": "s-1",
            "start": S,
            "end": S + MIN,
            "last_ms": S + 5,
            "emitted_ms": 0,
            "metrics": {
                "temp": {"count": 1, "sum": 2.0, "min": 2.0, "max": 2.0},
                "co2": {"count": 2, "sum": 9.0, "min": 4.0, "max": 5.0},
            },
        }
    )
    assert parse(CANDIDATES["quix-final"], merged) == [
        Row("subject", "s-1", "temp", S, MIN, True, 1, 2.0, 2.0, 2.0, None, (0, 0)),
        Row("subject", "s-1", "co2", S, MIN, True, 2, 9.0, 4.0, 5.0, None, (0, 0)),
    ]
    raw = out({"subject_id": "s-1", "metric": "temp", "start": S, **agg, "emitted_ms": 0})
    assert parse(CANDIDATES["raw-aggregate"], raw) == [
        Row("subject", "s-1", "temp", S, MIN, False, 1, 2.0, 2.0, 2.0, None, (0, 0))
    ]
    faust = out({"key": "s-1|temp", **agg, "last_ms": S + MIN - 1, "emitted_ms": 0})
    assert parse(CANDIDATES["faust-naive"], faust)[0].start_ms == S
    final = {"metric": "temp", "start": S, "end": S + MIN, "final": True, **agg}
    raw_subject = out({"scope": "subject", "subject_id": "s-1", **final})
    raw_group = out({"scope": "group", "group_id": "g", **final})
    assert parse(CANDIDATES["raw-finals-groups"], raw_subject) == [
        Row("subject", "s-1", "temp", S, MIN, True, 1, 2.0, 2.0, 2.0, None, (0, 0))
    ]
    assert parse(CANDIDATES["raw-finals-groups"], raw_group) == [
        Row("group", "g", "temp", S, MIN, True, 1, 2.0, 2.0, 2.0, None, (0, 0))
    ]


# -- the checker --------------------------------------------------------------------------


def small_truth(*, sequences: bool = False) -> Truth:
    """s-1/temp: [S, S+60s) 1.0, 2.0 (closed by e3); [S+150s...) is open: e3 = 4.0."""
    parsed = parse_events(
        [event("e1", 1.0, S + 1), event("e2", 2.0, S + 2), event("e3", 4.0, S + 150_000)]
    )
    return compute(parsed, Semantics((TUMBLING,)), sequences=sequences)


def row(start: int, final: bool, agg: Agg, offset: int, mean: float | None = None) -> Row:
    return Row("subject", "s-1", "temp", start, MIN, final, agg.count, agg.sum, agg.min, agg.max,
               mean, (0, offset))  # fmt: skip


FIRST = S
OPEN = S + 120_000  # the window of e3


def run_check(truth: Truth, rows: list[Row], **kwargs: Any) -> dict[str, Any]:
    return check("cand", truth, rows, finals=kwargs.pop("finals", True),
                 changes=kwargs.pop("changes", False), **kwargs)  # fmt: skip


def test_right_finals_pass() -> None:
    truth = small_truth()
    rows = [row(FIRST, True, Agg.of([1.0, 2.0]), 0, mean=1.5)]
    result = run_check(truth, rows, output_records=1, output_bytes=300, input_events=3)
    assert result["mismatches"] == []
    assert result["finals_checked"] == 1
    assert result["windows_closed"] == 1
    assert result["records_per_event"] == pytest.approx(1 / 3)
    assert result["bytes_per_event"] == pytest.approx(100)
    # the open window's final may be there too, right
    rows.append(row(OPEN, True, Agg.of([4.0]), 1))
    assert run_check(truth, rows)["mismatches"] == []


def test_wrong_count_sum_or_mean_fail() -> None:
    truth = small_truth()
    result = run_check(truth, [row(FIRST, True, Agg.of([1.0, 2.0, 2.0]), 0)])
    assert result["mismatch_count"] == 1
    assert "count/sum differ" in result["mismatches"][0]
    assert "s-1 temp window [2026-11-27T10:00:00Z +60s)" in result["mismatches"][0]
    wrong_mean = run_check(truth, [row(FIRST, True, Agg.of([1.0, 2.0]), 0, mean=1.6)])
    assert "mean differ" in wrong_mean["mismatches"][0]
    # sums to 1e-9 relative: another order of additions is no mismatch
    close = replace(row(FIRST, True, Agg.of([1.0, 2.0]), 0), sum=3.0 * (1 + 1e-12))
    assert run_check(truth, [close])["mismatches"] == []


def test_missing_closed_final_fails() -> None:
    result = run_check(small_truth(), [row(OPEN, True, Agg.of([4.0]), 0)])
    assert result["mismatch_count"] == 1
    assert result["mismatches"][0].startswith("cand: no final for the closed subject s-1 temp")


def test_final_for_a_window_without_input_fails() -> None:
    rows = [row(FIRST, True, Agg.of([1.0, 2.0]), 0), row(S - MIN, True, Agg.of([1.0]), 1)]
    result = run_check(small_truth(), rows)
    assert "expected no window (no input)" in result["mismatches"][0]


def test_two_different_finals_fail() -> None:
    rows = [row(FIRST, True, Agg.of([1.0, 2.0]), 0), row(FIRST, True, Agg.of([1.0]), 1)]
    result = run_check(small_truth(), rows)
    assert result["mismatch_count"] == 2  # the wrong one, and the two that differ
    assert any("2 finals with different figures" in m for m in result["mismatches"])
    same_twice = [row(FIRST, True, Agg.of([1.0, 2.0]), 0), row(FIRST, True, Agg.of([1.0, 2.0]), 1)]
    assert run_check(small_truth(), same_twice)["mismatches"] == []


def test_last_change_must_be_the_truth() -> None:
    truth = small_truth()
    good = [
        row(FIRST, False, Agg.of([1.0]), 0),
        row(FIRST, False, Agg.of([1.0, 2.0]), 1),
        row(OPEN, False, Agg.of([4.0]), 2),
    ]
    result = run_check(truth, good, finals=False, changes=True)
    assert result["mismatches"] == []
    assert result["changes_checked"] == 2
    stale = [good[1], good[0], good[2]]  # the older update arrived last
    stale = [replace(r, order=(0, i)) for i, r in enumerate(stale)]
    result = run_check(truth, stale, finals=False, changes=True)
    assert result["mismatch_count"] == 1
    assert result["mismatches"][0].startswith("cand: last change subject s-1 temp")
    missing = run_check(truth, good[:2], finals=False, changes=True)
    assert missing["mismatches"][0].startswith("cand: no change for subject s-1 temp")


def test_changes_and_finals_of_one_run() -> None:
    truth = small_truth()
    rows = [
        row(FIRST, False, Agg.of([1.0, 2.0]), 0),
        row(FIRST, True, Agg.of([1.0, 2.0]), 1),
        row(OPEN, False, Agg.of([4.0]), 2),
    ]
    result = run_check(truth, rows, finals=True, changes=True)
    assert (result["mismatches"], result["finals_checked"], result["changes_checked"]) == ([], 1, 2)
    result = run_check(truth, rows, finals=False, changes=True)
    assert result["mismatches"] == ["cand: 1 final records from a changes-only run"]


def test_partial_input_is_held_to_prefixes() -> None:
    truth = small_truth(sequences=True)
    prefix = [row(FIRST, False, Agg.of([1.0]), 0)]  # the rest not read: fine
    result = run_check(truth, prefix, finals=False, changes=True, partial=True)
    assert (result["mismatches"], result["changes_checked"]) == ([], 1)
    not_prefix = [row(FIRST, False, Agg.of([2.0]), 0)]  # e2 without e1
    result = run_check(truth, not_prefix, finals=False, changes=True, partial=True)
    assert "sum/min/max differ" in result["mismatches"][0]
    too_many = [row(FIRST, False, Agg.of([1.0, 2.0, 3.0]), 0)]
    result = run_check(truth, too_many, finals=False, changes=True, partial=True)
    assert "is more than the 2 values" in result["mismatches"][0]


# -- our worker's late events and dead letters --------------------------------------------


def late_truth() -> Truth:
    """s-a (group g) and s-b: one valid event each, one late event each, one invalid."""
    late_at = S - 3 * 3_600_000
    parsed = parse_events(
        [
            event("a1", 1.0, S + 1, subject="s-a", group="g"),
            event("b1", 2.0, S + 2, subject="s-b"),
            event("la", 8.0, late_at + 7, subject="s-a", group="g", kind=Kind.LATE),
            event("lb", 9.0, late_at + 9, subject="s-b", kind=Kind.LATE),
            invalid(b"[1]"),
        ]
    )
    return compute(parsed, Semantics((TUMBLING,), group_scope=True, dedup=True))


def letter(reason: str, event_id: str | None, scope: str | None = None) -> DeadLetter:
    return DeadLetter(reason, event_id, scope, (0, 0))


def test_late_events_counted_unless_dead_lettered() -> None:
    truth = late_truth()
    assert truth.late_pairs() == {("subject", "la"), ("group", "la"), ("subject", "lb")}
    assert truth.counted == 3
    old = S - 3 * 3_600_000
    counted = truth.counting_late({("group", "la")})
    assert figures(counted) == {
        ("subject", "s-a", "temp", S, MIN): (1, 1.0, 1.0, 1.0),
        ("group", "g", "temp", S, MIN): (1, 1.0, 1.0, 1.0),
        ("subject", "s-b", "temp", S, MIN): (1, 2.0, 2.0, 2.0),
        ("subject", "s-a", "temp", old, MIN): (1, 8.0, 8.0, 8.0),
        ("subject", "s-b", "temp", old, MIN): (1, 9.0, 9.0, 9.0),
    }
    assert counted.counted == 5
    # a late window is long closed: its final must be there
    assert ("subject", "s-a", "temp", old, MIN) in counted.closed
    assert figures(truth) == figures(late_truth())  # the original is left as it was


def test_dead_letters_accounted_for() -> None:
    truth = late_truth()
    letters = [letter("invalid", None), letter("late", "la", "group")]
    refused, problems, reasons = account_dead_letters(truth, letters)
    assert (refused, problems, reasons) == ({("group", "la")}, [], {"invalid": 1, "late": 1})
    # a valid event refused as late, a late one refused twice, invalid ones not all there
    bad = [letter("late", "a1", "subject"), letter("late", "lb", "subject")] * 2
    refused, problems, _ = account_dead_letters(truth, bad)
    assert refused == {("subject", "lb")}
    assert problems == [
        "late dead letter for ('subject', 'a1'), not a late event of the input",
        "late dead letter for ('subject', 'a1'), not a late event of the input",
        "two late dead letters for ('subject', 'lb')",
        "0 invalid dead letters for the 1 invalid records",
    ]
    other = [letter("invalid", None), letter("unprocessable", "b1")]
    _, problems, _ = account_dead_letters(truth, other)
    assert problems == ["dead letter unprocessable for event b1 at (0, 0)"]


def test_parse_a_late_dead_letter() -> None:
    doc = {
        "reason": "late",
        "event_id": "la",
        "errors": [
            {
                "field": "observed_at",
                "message": "every group window holding observed_at has closed: the watermark "
                "is 2026-11-27T10:00:00Z, grace 30s",
            }
        ],
    }
    assert parse_dead_letter(out(doc, offset=4)) == DeadLetter("late", "la", "group", (0, 4))

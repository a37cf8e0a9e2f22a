"""The rolling-state changelog as written before the changelog codec (the fixture: tables
of tests/unit/fixtures/legacy_changelog, made by `tests.support.legacy_changelog` at commit
0ff5a3e) restores to the state that code restored: the same watermark and clock, panes and
their forms, queries, dedup and late decisions, anomalies and finals. Written again in the
newest format, each table restores to that state too."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from agents.rolling import changelog
from agents.rolling.aggregate import PaneAggregate
from agents.rolling.changelog import Kind
from tests.support.legacy_changelog import (
    FIXTURES,
    SCENARIOS,
    Scenario,
    aggregates_of,
    load_table,
    new_state,
    outcomes,
)

CASES = [
    (table, scenario, kind)
    for scenario in SCENARIOS
    for table in ((scenario.name, "oldest") if scenario.name == "full" else (scenario.name,))
    for kind in (scenario.restore_as[:1] if table == "oldest" else scenario.restore_as)
]
IDS = [f"{table}-as-{kind}" for table, _, kind in CASES]


def restored(table: dict[str, bytes], scenario: Scenario, kind: str) -> Any:
    state = new_state(scenario, kind)
    state.restore(table.items())
    return orjson.loads(orjson.dumps(outcomes(state, scenario)))


def expected(table: str, kind: str) -> Any:
    return orjson.loads((FIXTURES / f"{table}.{kind}.json").read_bytes())


def rewritten(table: dict[str, bytes], aggregates: type[PaneAggregate]) -> dict[str, bytes]:
    """Every value decoded and encoded again, as this code writes it."""
    names: dict[str, str] = {}
    out: dict[str, bytes] = {}
    for name, raw in table.items():
        kind, _ = changelog.parse_key(name, names)
        assert kind is not None
        record = changelog.decode(kind, raw, aggregates)
        if isinstance(record, changelog.PanesRecord):
            [out[name]] = changelog.encode_panes(record, aggregates)
        elif isinstance(record, changelog.ClockRecord):
            out[name] = changelog.encode_clock(record)
        elif isinstance(record, changelog.JournalRecord):
            out[name] = changelog.encode_journal(record)
        elif isinstance(record, changelog.LatestFinalRecord):
            out[name] = changelog.encode_latest_final(record)
        else:
            out[name] = changelog.encode_baseline(record)
        assert isinstance(orjson.loads(out[name])[0], str)  # tagged: the newest format
    return out


@pytest.mark.parametrize(("table", "scenario", "kind"), CASES, ids=IDS)
def test_a_table_written_before_the_codec_restores_to_the_same_state(
    table: str, scenario: Scenario, kind: str
) -> None:
    found, want = restored(load_table(table), scenario, kind), expected(table, kind)
    for field in want:  # one field at a time: a failure names what differs
        assert found[field] == want[field], field


@pytest.mark.parametrize(("table", "scenario", "kind"), CASES, ids=IDS)
def test_the_table_written_again_in_the_newest_format_restores_to_the_same_state(
    table: str, scenario: Scenario, kind: str
) -> None:
    legacy = load_table(table)
    again = rewritten(legacy, aggregates_of(scenario.kind))
    assert again.keys() == legacy.keys()
    found, want = restored(again, scenario, kind), expected(table, kind)
    for field in want:
        assert found[field] == want[field], field


def test_the_fixture_holds_every_record_type_and_earlier_variant() -> None:
    """What the migration tests cover: each record type; panes of every form (basic, full,
    full past the observer bound, one value) and in parts; a bare watermark; baselines of
    5 fields."""
    seen: set[Any] = set()
    for name in ("full", "basic", "parts", "oldest"):
        for key, raw in load_table(name).items():
            kind = Kind(orjson.loads(key)[0])
            value = orjson.loads(raw)
            seen.add(kind)
            if kind is Kind.PANES:
                seen.update(("pane", len(state), state[0] == 1) for _, state in value[1])
                seen.add(("part", len(orjson.loads(key)) > 4))
            elif kind in (Kind.CLOCK, Kind.BASELINE):
                seen.add((kind, type(value).__name__, len(value) if kind is Kind.BASELINE else 0))
    assert set(Kind) <= seen
    assert {("pane", 6, True), ("pane", 6, False), ("pane", 10, True), ("pane", 10, False)} <= seen
    assert {("pane", 11, False), ("part", True)} <= seen
    assert {(Kind.CLOCK, "int", 0), (Kind.CLOCK, "dict", 0)} <= seen
    assert {(Kind.BASELINE, "list", 5), (Kind.BASELINE, "list", 6)} <= seen

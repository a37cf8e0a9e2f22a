"""The rolling-state changelog as written before the changelog codec (the fixture: tables
of tests/unit/fixtures/legacy_changelog, made by `python -m tests.support.legacy_changelog`
at the commit that added them) restores to the state that code restored: the same
watermark and clock, panes and their forms, queries, dedup and late decisions, anomalies
and finals."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.support.legacy_changelog import (
    FIXTURES,
    SCENARIOS,
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


def expected(table: str, kind: str) -> Any:
    return orjson.loads((FIXTURES / f"{table}.{kind}.json").read_bytes())


@pytest.mark.parametrize(("table", "scenario", "kind"), CASES, ids=lambda c: getattr(c, "name", c))
def test_a_table_written_before_the_codec_restores_to_the_same_state(
    table: str, scenario: Any, kind: str
) -> None:
    state = new_state(scenario, kind)
    state.restore(load_table(table).items())
    found = orjson.loads(orjson.dumps(outcomes(state, scenario)))
    want = expected(table, kind)
    for field in want:  # one field at a time: a failure names what differs
        assert found[field] == want[field], field

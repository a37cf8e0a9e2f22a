"""Reading the finals of `insights.rolling` and holding them to ground truth."""

from __future__ import annotations

from typing import Any

from tests.support.broker import Broker
from tests.support.kafka_io import read_topic
from tests.support.scenario import final_figures
from tests.support.truth import assert_matches
from tests.support.worker import TopicNames


async def wait_for_finals(
    broker: Broker, names: TopicNames, expected: dict[Any, Any], deadline_s: float = 180.0
) -> dict[Any, list[dict[str, Any]]]:
    """Read the rolling topic until every expected window has a final (or the deadline)."""

    def complete(records: list[Any]) -> bool:
        return set(expected) <= set(final_figures(records))

    records = await read_topic(
        broker.bootstrap_servers, names.rolling, until=complete, deadline_s=deadline_s
    )
    return final_figures(records)


def assert_exact(finals: dict[Any, list[dict[str, Any]]], expected: dict[Any, Any]) -> None:
    """One final per window with data, each equal to ground truth."""
    missing = set(expected) - set(finals)
    extra = set(finals) - set(expected)
    assert not missing, f"{len(missing)} windows without a final, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} finals for windows without data, e.g. {sorted(extra)[:3]}"
    for key, records in finals.items():
        assert len(records) == 1, f"{key}: {len(records)} finals"
        assert_matches(records[0], expected[key], str(key))

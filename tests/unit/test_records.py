"""The hot-path rendering of insights and consensus equals the contract models' own JSON; the
observer-scores records carry their rows in order."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.observers import SCORES_PER_RECORD, Coordinator, Score, ScoreRow, decode_scores
from agents.rolling import Aggregate, BasicAggregate, Emission, WindowPlan
from agents.rolling.records import insight_record
from models import RollingInsight, dumps, utc_ms, utc_now
from streams.runtime.settings import Settings, load_settings
from streams.runtime.windows import parse_windows


def test_rendered_record_equals_the_models_dump() -> None:
    plan = WindowPlan(parse_windows("tumbling:60s,hopping:300s/60s"), 30_000)
    agg = Aggregate()
    for i, value in enumerate([20.9, 21.3, 22.0, -0.5]):
        agg.add(value, 1_795_780_803_120 + i * 1000, f"e{i}", f"o{i % 2}")
    now = utc_now()
    for scope, entity in (("subject", "s-17"), ("group", "site-7")):
        for window in plan.windows_of(1_795_780_803_120):
            emission = Emission((scope, entity, "temp"), window, agg.finish(), final=True)
            key, value = insight_record(emission, now)
            model = RollingInsight.model_validate_json(value)
            assert orjson.loads(dumps(model)) == orjson.loads(value)
            assert key == (entity if scope == "subject" else f"group:{entity}").encode()


def test_a_basic_record_has_the_basic_figures_and_null_for_the_rest() -> None:
    plan = WindowPlan(parse_windows("tumbling:60s"), 30_000)
    agg = BasicAggregate()
    for i, value in enumerate([20.9, 21.3, 22.0, -0.5]):
        agg.add(value, 1_795_780_803_120 + i * 1000, f"e{i}", f"o{i % 2}")
    window = next(iter(plan.windows_of(1_795_780_803_120)))
    emission = Emission(("subject", "s-17", "temp"), window, agg.finish(), final=True)

    _, value = insight_record(emission, utc_now())

    model = RollingInsight.model_validate_json(value)
    assert orjson.loads(dumps(model)) == orjson.loads(value)
    record = orjson.loads(value)
    total = 20.9 + 21.3 + 22.0 - 0.5
    assert (record["count"], record["min"], record["max"]) == (4, -0.5, 22.0)
    assert record["sum"] == pytest.approx(total, abs=1e-12)
    assert record["mean"] == record["sum"] / 4
    assert record["rate_per_s"] == 4 / 60
    assert (record["first_at"], record["last_at"]) == (
        utc_ms(1_795_780_803_120),
        utc_ms(1_795_780_806_120),
    )
    nulls = ("stddev", "p50", "p90", "p99", "first_value", "last_value")
    assert {name: record[name] for name in (*nulls, "observers")} == dict.fromkeys(
        (*nulls, "observers")
    )


def _coordinator(app_id: str) -> tuple[Coordinator, Settings]:
    """A coordinator on the default settings (its app never connects)."""
    import faust

    from streams.runtime.topics import declare_topics

    settings = load_settings({})
    app = faust.App(app_id, broker="kafka://127.0.0.1:1", autodiscover=False)
    return Coordinator(declare_topics(app, settings), settings), settings


def test_rendered_consensus_equals_the_models_dump() -> None:
    from models import ConsensusRecord

    coordinator, settings = _coordinator("pin-consensus")
    plan = WindowPlan(parse_windows("tumbling:60s,hopping:300s/60s"), 30_000)
    agg = Aggregate()
    for i, value in enumerate([20.9, 21.3, 22.0, 35.5, 21.0, 21]):
        agg.add(value, 1_795_780_803_120 + i * 1001, f"e{i}", f"o{i % 3}")
    now = utc_now()
    last_seen = {f"o{i % 3}": 1_795_780_803_120 + i * 1001 for i in range(6)}
    families = set()
    for window in plan.windows_of(1_795_780_803_120):
        emission = Emission(("subject", "s-17", "temp"), window, agg.finish(), final=True)
        scores: dict[str, list[ScoreRow]] = {}

        record = coordinator.judge(emission, now, scores)

        assert record is not None
        topic, key, value, _ = record
        assert (topic, key) == (settings.observer_topic, b"s-17")
        model = ConsensusRecord.model_validate_json(value)
        assert orjson.loads(dumps(model)) == orjson.loads(value)
        assert len(model.observers) == 3
        # Scored from the primary family only: each observer's standing, by observer.
        primary = window.spec == settings.windows[0]
        families.add(primary)
        rows = {
            o.observer_id: [
                (
                    o.observer_id,
                    o.deviation,
                    o.outlier,
                    window.end_ms,
                    60_000,
                    last_seen[o.observer_id],
                )
            ]
            for o in model.observers
        }
        assert scores == (rows if primary else {})
    assert families == {True, False}


def test_scores_go_one_record_per_observer_per_flush_in_order() -> None:
    coordinator, settings = _coordinator("pin-scores")
    rows: dict[str, list[ScoreRow]] = {
        "o1": [("o1", i / 7, i % 5 == 0, 60_000 * (i + 1), 60_000, 60_000 * i + 17)
               for i in range(SCORES_PER_RECORD + 3)],
        "o2": [("o2", -1.5, False, 60_000, 60_000, 59_999)],
    }  # fmt: skip

    records = list(coordinator.score_records(rows))

    assert [(topic, key) for topic, key, _, _ in records] == [
        (settings.scores_topic, b"o1"),
        (settings.scores_topic, b"o1"),
        (settings.scores_topic, b"o2"),
    ]
    decoded = [decode_scores(value) for _, _, value, _ in records]
    assert [len(scores) for scores in decoded] == [SCORES_PER_RECORD, 3, 1]
    assert [score for scores in decoded[:2] for score in scores] == [
        Score(*row) for row in rows["o1"]
    ]
    assert decoded[2] == [Score("o2", -1.5, False, 60_000, 60_000, 59_999)]
    # A record written before scores were batched: one score, its fields in a list.
    assert decode_scores(b'["o3",2.5,true,120000,60000,119000]') == [
        Score("o3", 2.5, True, 120_000, 60_000, 119_000)
    ]


@given(st.integers(min_value=-(10**13), max_value=10**14))
def test_fast_utc_text_equals_format_utc(ms: int) -> None:
    from models import format_utc, from_epoch_ms, stamp_utc, utc_ms

    assert utc_ms(ms) == format_utc(from_epoch_ms(ms))
    moment = from_epoch_ms(ms)
    assert stamp_utc(moment) == format_utc(moment)

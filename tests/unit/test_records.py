"""The hot-path rendering of insights equals the contract model's own JSON."""

from __future__ import annotations

import orjson

from agents.rolling import Aggregate, Emission, WindowPlan
from agents.rolling.records import insight_record
from models import RollingInsight, dumps, utc_now
from streams.durations import parse_windows


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

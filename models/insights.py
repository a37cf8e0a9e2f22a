"""Output records of `insights.rolling`: window aggregates per subject or group."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from models.timefmt import UtcDatetime, utc_ms

__all__ = ["RollingInsight", "WindowInfo", "WindowType", "window_fragment", "window_json"]

WindowType = Literal["tumbling", "hopping"]


class WindowInfo(BaseModel):
    """Which event-time window an insight covers: `[start, end)`, epoch-aligned."""

    model_config = ConfigDict(frozen=True)

    type: WindowType
    size_s: int
    step_s: int
    start: UtcDatetime
    end: UtcDatetime


class RollingInsight(BaseModel):
    """Aggregates of one metric of one subject (or group) over one window."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    scope: Literal["subject", "group"]
    subject_id: str | None
    group_id: str | None
    metric: str
    window: WindowInfo
    final: bool
    count: int
    sum: float
    mean: float
    min: float
    max: float
    # null below two values; with INSIGHTS_AGGREGATES=basic (count, sum, mean, min, max,
    # first_at and last_at) it and the other figures here down to `observers` are null
    stddev: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    first_value: float | None
    last_value: float | None
    first_at: UtcDatetime | None
    last_at: UtcDatetime | None
    observers: int | None
    rate_per_s: float
    emitted_at: UtcDatetime


def window_json(
    window_type: str, size_s: int, step_s: int, start_ms: int, end_ms: int
) -> dict[str, Any]:
    """The `window` object of a record as `WindowInfo` dumps it, for the records rendered
    straight to JSON on the hot path (insights, consensus)."""
    return {
        "type": window_type,
        "size_s": size_s,
        "step_s": step_s,
        "start": utc_ms(start_ms),
        "end": utc_ms(end_ms),
    }


@lru_cache(maxsize=4096)
def window_fragment(
    window_type: str, size_s: int, step_s: int, start_ms: int, end_ms: int
) -> orjson.Fragment:
    """`window_json` rendered once per window and reused in records (`orjson.Fragment`): a
    flush sends one record per key for each window (a few per family are live)."""
    return orjson.Fragment(orjson.dumps(window_json(window_type, size_s, step_s, start_ms, end_ms)))

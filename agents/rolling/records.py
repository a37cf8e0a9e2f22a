"""Turning window emissions into `insights.rolling` records.

On the hot path: the record is rendered straight to JSON, field for field as the
`RollingInsight` model would dump it (a unit test holds the two equal), without building
and validating a pydantic model per record; the `window` object is rendered once per
window (`window_fragment`).
"""

from __future__ import annotations

from datetime import datetime

import orjson

from agents.rolling.state import Emission
from models import stamp_utc, utc_ms, window_fragment

__all__ = ["insight_record"]


def insight_record(emission: Emission, emitted_at: datetime) -> tuple[bytes, bytes]:
    """(Kafka key, JSON value) of the rolling insight for one emission."""
    scope, entity, metric = emission.key
    window = emission.window
    spec = window.spec
    summary = emission.summary
    subject = scope == "subject"
    record = {
        "schema_version": 1,
        "scope": "subject" if subject else "group",
        "subject_id": entity if subject else None,
        "group_id": None if subject else entity,
        "metric": metric,
        "window": window_fragment(
            spec.type, spec.size_s, spec.step_s, window.start_ms, window.end_ms
        ),
        "final": emission.final,
        "count": summary.count,
        "sum": summary.sum,
        "mean": summary.mean,
        "min": summary.min,
        "max": summary.max,
        "stddev": summary.stddev,
        "p50": summary.p50,
        "p90": summary.p90,
        "p99": summary.p99,
        "first_value": summary.first_value,
        "last_value": summary.last_value,
        "first_at": None if summary.first_ms is None else utc_ms(summary.first_ms),
        "last_at": None if summary.last_ms is None else utc_ms(summary.last_ms),
        "observers": summary.observers,
        "rate_per_s": summary.count / spec.size_s,
        "emitted_at": stamp_utc(emitted_at),
    }
    key = entity if subject else f"group:{entity}"
    return key.encode(), orjson.dumps(record)

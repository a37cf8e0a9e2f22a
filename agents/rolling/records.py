"""Turning window emissions into `insights.rolling` records."""

from __future__ import annotations

from datetime import datetime

from agents.rolling.state import Emission
from models import RollingInsight, WindowInfo, dumps, from_epoch_ms

__all__ = ["insight_record"]


def insight_record(emission: Emission, emitted_at: datetime) -> tuple[bytes, bytes]:
    """(Kafka key, JSON value) of the rolling insight for one emission."""
    scope, entity, metric = emission.key
    window = emission.window
    summary = emission.summary
    size_s = window.spec.size_s
    record = RollingInsight(
        scope="subject" if scope == "subject" else "group",
        subject_id=entity if scope == "subject" else None,
        group_id=entity if scope == "group" else None,
        metric=metric,
        window=WindowInfo(
            type=window.spec.type,
            size_s=size_s,
            step_s=window.spec.step_s,
            start=from_epoch_ms(window.start_ms),
            end=from_epoch_ms(window.end_ms),
        ),
        final=emission.final,
        count=summary.count,
        sum=summary.sum,
        mean=summary.mean,
        min=summary.min,
        max=summary.max,
        stddev=summary.stddev,
        p50=summary.p50,
        p90=summary.p90,
        p99=summary.p99,
        first_value=summary.first_value,
        last_value=summary.last_value,
        first_at=from_epoch_ms(summary.first_ms),
        last_at=from_epoch_ms(summary.last_ms),
        observers=summary.observers,
        rate_per_s=summary.count / size_s,
        emitted_at=emitted_at,
    )
    key = entity if scope == "subject" else f"group:{entity}"
    return key.encode(), dumps(record)

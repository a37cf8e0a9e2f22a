"""Output records of `insights.anomalies`: values far from their subject's baseline."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from models.timefmt import UtcDatetime

__all__ = ["Anomaly", "Severity"]

Severity = Literal["warning", "critical"]


class Anomaly(BaseModel):
    """One value whose z-score against the exponentially weighted baseline passed a threshold."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    subject_id: str
    metric: str
    event_id: str
    observer_id: str
    observed_at: UtcDatetime
    value: float
    baseline_mean: float
    baseline_stddev: float
    zscore: float
    severity: Severity
    detected_at: UtcDatetime

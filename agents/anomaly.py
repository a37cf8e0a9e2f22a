"""Anomalies: per (subject, metric) an exponentially weighted baseline of earlier values.

After `warmup` values, a value whose |z| against the baseline reaches the warning or critical
threshold is an anomaly. A cooldown (event time) keeps a burst from flooding the topic: within
it, only a more severe anomaly of the same key is reported.

An anomalous value updates the baseline only clipped to the warning band
(`mean ± warning_z · stddev`): a spike cannot drag the baseline after it, while a lasting
level shift is still absorbed step by step (and stops being reported once absorbed).
Pure: the rolling partition state calls it for every counted subject-scope observation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from models import Anomaly, dumps, from_epoch_ms
from models.codec import right_sized
from models.keyed import KeyedObservation

__all__ = ["AnomalyConfig", "BaselineState", "Detection", "anomaly_record"]

_SEVERITIES: Final = ("warning", "critical")


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    """Thresholds, warm-up, smoothing and cooldown (from settings)."""

    alpha: float
    warmup: int
    warning_z: float
    critical_z: float
    cooldown_ms: int


@dataclass(frozen=True, slots=True)
class Detection:
    """One anomaly, with the baseline it was judged against."""

    subject_id: str
    metric: str
    event_id: str
    observer_id: str
    observed_ms: int
    value: float
    baseline_mean: float
    baseline_stddev: float
    zscore: float
    severity: str


class BaselineState:
    """The baselines of one partition: (subject, metric) -> [count, mean, var, last anomaly
    ms, last severity rank]."""

    def __init__(self, config: AnomalyConfig) -> None:
        self.config = config
        self._baselines: dict[tuple[str, str], list[Any]] = {}
        self._changed: set[tuple[str, str]] = set()

    def offer(self, record: KeyedObservation) -> Detection | None:
        """Judge one value against its baseline, then fold it in."""
        key = (record.subject_id, record.metric)
        x = record.value
        self._changed.add(key)
        baseline = self._baselines.get(key)
        if baseline is None:
            self._baselines[key] = [1, x, 0.0, None, 0]
            return None
        count, mean, var, last_ms, last_rank = baseline
        cfg = self.config
        detection = None
        update = x
        std = math.sqrt(var)
        if count >= cfg.warmup and std > 0:
            z = (x - mean) / std
            magnitude = abs(z)
            rank = 2 if magnitude >= cfg.critical_z else 1 if magnitude >= cfg.warning_z else 0
            if rank:
                t = record.observed_ms
                cooling = last_ms is not None and t - last_ms < cfg.cooldown_ms
                if not cooling or rank > last_rank:
                    detection = Detection(
                        record.subject_id,
                        record.metric,
                        record.event_id,
                        record.observer_id,
                        t,
                        x,
                        mean,
                        std,
                        z,
                        _SEVERITIES[rank - 1],
                    )
                    baseline[3], baseline[4] = t, rank
                update = mean + math.copysign(cfg.warning_z * std, z)
        diff = update - mean
        increment = cfg.alpha * diff
        baseline[0] = count + 1
        baseline[1] = mean + increment
        baseline[2] = (1 - cfg.alpha) * (var + diff * increment)
        return detection

    def take_persist(self) -> dict[str, bytes]:
        """Changed baselines as logical key -> value."""
        writes = {
            orjson.dumps(["b", subject, metric]).decode(): right_sized(
                orjson.dumps(self._baselines[key])
            )
            for key in self._changed
            for subject, metric in (key,)
        }
        self._changed.clear()
        return writes

    def restore(self, subject: str, metric: str, value: bytes) -> None:
        """Load one persisted baseline."""
        self._baselines[(subject, metric)] = list(orjson.loads(value))

    def __len__(self) -> int:
        return len(self._baselines)


def anomaly_record(detection: Detection, detected_at: datetime) -> tuple[bytes, bytes]:
    """(Kafka key, JSON value) of the `insights.anomalies` record."""
    record = Anomaly(
        subject_id=detection.subject_id,
        metric=detection.metric,
        event_id=detection.event_id,
        observer_id=detection.observer_id,
        observed_at=from_epoch_ms(detection.observed_ms),
        value=detection.value,
        baseline_mean=detection.baseline_mean,
        baseline_stddev=detection.baseline_stddev,
        zscore=detection.zscore,
        severity="critical" if detection.severity == "critical" else "warning",
        detected_at=detected_at,
    )
    return detection.subject_id.encode(), dumps(record)

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from models import Anomaly, dumps, from_epoch_ms
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
    history_ttl_ms: int | None = None  # a baseline not updated this long is forgotten


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
    ms, last severity rank, last observed ms]."""

    def __init__(self, config: AnomalyConfig) -> None:
        self.config = config
        self._baselines: dict[tuple[str, str], list[Any]] = {}
        self._changed: set[tuple[str, str]] = set()
        self._removed: set[tuple[str, str]] = set()

    def offer(self, record: KeyedObservation) -> Detection | None:
        """Judge one value against its baseline, then fold it in."""
        key = (record.subject_id, record.metric)
        x = record.value
        self._changed.add(key)
        baseline = self._baselines.get(key)
        if baseline is None:
            self._baselines[key] = [1, x, 0.0, None, 0, record.observed_ms]
            self._removed.discard(key)
            return None
        count, mean, var, last_ms, last_rank, seen_ms = baseline
        if seen_ms is None or record.observed_ms > seen_ms:
            baseline[5] = record.observed_ms
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

    def expire(self, watermark_ms: int) -> None:
        """Forget the baselines whose newest value is `history_ttl_ms` older than the
        watermark (a baseline restored without a time starts its TTL now)."""
        ttl = self.config.history_ttl_ms
        if ttl is None:
            return
        horizon = watermark_ms - ttl
        for key, baseline in list(self._baselines.items()):
            if baseline[5] is None:
                baseline[5] = watermark_ms
            elif baseline[5] < horizon:
                del self._baselines[key]
                self._changed.discard(key)
                self._removed.add(key)

    def snapshot(self) -> dict[tuple[str, str], list[Any] | None]:
        """The baselines changed since the last snapshot, by (subject, metric): the fields
        in order (None: forgotten). The lists are the live ones: encode them before the
        next `offer`."""
        records: dict[tuple[str, str], list[Any] | None] = {
            key: self._baselines[key] for key in self._changed
        }
        records.update(dict.fromkeys(self._removed))
        self._changed.clear()
        self._removed.clear()
        return records

    def restore(self, records: Iterable[tuple[tuple[str, str], Sequence[Any]]]) -> None:
        """Rebuild from every baseline of the changelog (`seen_ms` None: restored from
        before it was kept; `expire` starts its TTL)."""
        for key, fields in records:
            self._baselines[key] = list(fields)

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

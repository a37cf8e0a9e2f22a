"""Anomaly baselines and observer consensus: the pure rules."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from agents.anomaly import AnomalyConfig, BaselineState
from agents.observers import ObserverBook, Score, consensus_of
from models.keyed import KeyedObservation

CFG = AnomalyConfig(alpha=0.1, warmup=30, warning_z=3.0, critical_z=5.0, cooldown_ms=60_000)


def obs(i: int, value: float, t: int | None = None) -> KeyedObservation:
    t = i * 1000 if t is None else t
    return KeyedObservation(
        "subject", "s", f"e{i}", "o", "s", None, "temp", value, t, None, 0, i, 0
    )


def test_no_anomaly_during_warmup_and_spikes_after_it() -> None:
    rng = random.Random(1)
    state = BaselineState(CFG)
    found = {}
    for i in range(200):
        value = 50 + rng.uniform(-1, 1) + (40 if i in (5, 100, 130, 170) else 0)
        detection = state.offer(obs(i, value))
        if detection:
            found[i] = detection
    assert sorted(found) == [100, 170]  # 5: warm-up; 130: cooling down after 100
    assert {d.severity for d in found.values()} == {"critical"}
    assert all(d.zscore > 5 for d in found.values())


def test_zscore_is_against_the_baseline_before_the_value() -> None:
    state = BaselineState(
        AnomalyConfig(alpha=0.5, warmup=2, warning_z=1.0, critical_z=2.0, cooldown_ms=0)
    )
    values = [10.0, 12.0, 11.0, 30.0]
    mean, var = 10.0, 0.0
    for v in values[1:3]:  # the independent EW recurrence
        diff = v - mean
        mean += 0.5 * diff
        var = 0.5 * (var + diff * 0.5 * diff)
    detections = [state.offer(obs(i, v)) for i, v in enumerate(values)]
    last = detections[-1]
    assert last is not None and last.severity == "critical"
    assert last.baseline_mean == pytest.approx(mean, rel=1e-12)
    assert last.baseline_stddev == pytest.approx(math.sqrt(var), rel=1e-12)
    assert last.zscore == pytest.approx((30.0 - mean) / math.sqrt(var), rel=1e-12)


def test_cooldown_suppresses_equal_severity_but_not_escalation() -> None:
    cfg = AnomalyConfig(alpha=0.2, warmup=10, warning_z=3.0, critical_z=8.0, cooldown_ms=60_000)
    state = BaselineState(cfg)
    rng = random.Random(2)
    for i in range(50):
        state.offer(obs(i, 50 + rng.uniform(-1, 1)))
    warning = state.offer(obs(50, 52.5))
    again = state.offer(obs(51, 52.5))
    critical = state.offer(obs(52, 60.0))
    later = state.offer(obs(200, 60.0, t=200_000))
    assert warning is not None and warning.severity == "warning"
    assert again is None
    assert critical is not None and critical.severity == "critical"
    assert later is not None


def test_baselines_persist_and_restore() -> None:
    state = BaselineState(CFG)
    for i in range(40):
        state.offer(obs(i, float(i % 7)))
    restored = BaselineState(CFG)
    snapshot = state.snapshot()
    restored.restore((key, fields) for key, fields in snapshot.items() if fields is not None)
    a, b = state.offer(obs(40, 100.0)), restored.offer(obs(40, 100.0))
    assert a == b and a is not None


def test_consensus_is_median_of_means_with_robust_deviations() -> None:
    per_observer = [("o1", 4, 40.4, 9), ("o2", 5, 49.5, 8), ("o3", 2, 30.0, 7)]
    result = consensus_of(per_observer, threshold=3.5)
    assert result is not None
    means = [10.1, 9.9, 15.0]
    center = statistics.median(means)
    mad = statistics.median(abs(m - center) for m in means)
    assert result.consensus == pytest.approx(center)
    assert result.spread == pytest.approx(mad)
    by_observer = {s.observer_id: s for s in result.standings}
    assert by_observer["o3"].deviation == pytest.approx((15.0 - center) / (1.4826 * mad))
    assert [by_observer[o].outlier for o in ("o1", "o2", "o3")] == [False, False, True]
    assert by_observer["o1"].last_seen_ms == 9
    assert consensus_of(per_observer[:1], threshold=3.5) is None


def test_consensus_with_zero_mad_uses_mean_absolute_deviation() -> None:
    result = consensus_of([("a", 1, 10.0, 0), ("b", 1, 10.0, 0), ("c", 1, 20.0, 0)], 3.5)
    assert result is not None and result.spread == 0.0
    scale = 1.253314 * statistics.fmean([0.0, 0.0, 10.0])
    assert result.standings[2].deviation == pytest.approx(10.0 / scale)


def test_observer_book_drift_and_staleness() -> None:
    book = ObserverBook(drift_alpha=0.5, stale_windows=2)
    book.score(Score("o1", 4.0, True, 60_000, 60_000, 59_000))
    book.score(Score("o2", 0.5, False, 60_000, 60_000, 59_500))
    book.score(Score("o1", 2.0, False, 120_000, 60_000, 119_000))
    assert book.observers["o1"].drift_score == pytest.approx(0.5 * 2.0 + 0.5 * 4.0)
    assert (book.observers["o1"].windows_scored, book.observers["o1"].outlier_windows) == (2, 1)
    book.take_changed()
    book.score(Score("o1", 0.0, False, 180_000, 60_000, 179_000))
    book.mark_stale()  # o2 last scored in the window ending 60s: 60s + 2*60s <= 180s
    changed = book.take_changed()
    assert changed["o2"].stale and not changed["o1"].stale
    book.mark_stale()
    assert book.take_changed() == {}  # reported once

"""The load generator: exact shares, a drifting observer with the stated bias, spikes where it
says, and every message judged by the worker's own decoder as its kind says."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict

import pytest

from models import DecodeError, decode_observation
from models.deadletter import DeadLetterReason
from streams.cli.generator import (
    INVALID_RULES,
    GeneratedEvent,
    GeneratorConfig,
    Kind,
    ObservationGenerator,
    exact_quotas,
)

START_MS = 1_795_773_600_000  # 2026-11-27T10:00:00Z


def config(**overrides: object) -> GeneratorConfig:
    values: dict[str, object] = {
        "start_ms": START_MS,
        "seed": 11,
        "invalid_share": 0.1,
        "duplicate_share": 0.05,
        "late_share": 0.04,
        "spike_share": 0.03,
    }
    values.update(overrides)
    return GeneratorConfig(**values)  # type: ignore[arg-type]


def generate(count: int, **overrides: object) -> list[GeneratedEvent]:
    return list(ObservationGenerator(config(**overrides), count=count))


@pytest.mark.parametrize(("count", "seed"), [(1000, 1), (997, 2), (20_000, 3), (13, 4)])
def test_shares_are_exact_for_a_count(count: int, seed: int) -> None:
    events = generate(count, seed=seed)
    kinds = Counter(e.kind for e in events)
    assert len(events) == count
    assert kinds[Kind.INVALID] == int(count * 0.1 + 0.5)
    assert kinds[Kind.DUPLICATE] == int(count * 0.05 + 0.5)
    assert kinds[Kind.LATE] == int(count * 0.04 + 0.5)
    assert kinds[Kind.SPIKE] == int(count * 0.03 + 0.5)
    assert kinds[Kind.VALID] == count - sum(kinds[k] for k in Kind if k is not Kind.VALID)
    assert dict(kinds) == {k: n for k, n in exact_quotas(count, config()).items() if n}


def test_same_seed_same_messages_other_seed_other_messages() -> None:
    a = [(e.key, e.value, e.kind) for e in generate(500)]
    b = [(e.key, e.value, e.kind) for e in generate(500)]
    c = [(e.key, e.value, e.kind) for e in generate(500, seed=12)]
    assert a == b
    assert a != c


def test_every_kind_is_judged_by_the_worker_decoder_as_it_says() -> None:
    events = generate(3000)
    rules = Counter()
    for event in events:
        if event.kind is Kind.INVALID:
            with pytest.raises(DecodeError) as caught:
                decode_observation(event.value, max_bytes=65_536)
            assert caught.value.reason is DeadLetterReason.INVALID, event.rule
            rules[event.rule] += 1
        else:
            observation = decode_observation(event.value, max_bytes=65_536)
            assert observation.event_id == event.event_id
            assert observation.subject_id == event.subject_id
            assert observation.group_id == event.group_id
            assert observation.observed_ms == event.observed_ms
            assert event.key == event.subject_id.encode()
    assert set(rules) == set(INVALID_RULES)  # every broken rule shows up


def test_duplicates_repeat_earlier_accepted_messages_byte_for_byte() -> None:
    events = generate(2000)
    sent: dict[str, bytes] = {}
    for event in events:
        if event.kind is Kind.DUPLICATE:
            assert event.duplicate_of in sent
            assert sent[event.duplicate_of] == event.value
        elif event.kind in (Kind.VALID, Kind.SPIKE):
            assert event.event_id is not None
            assert event.event_id not in sent  # ids are unique apart from duplicates
            sent[event.event_id] = event.value


def test_late_events_are_hours_before_their_subjects_newest_event() -> None:
    events = generate(3000, late_by_ms=3 * 3_600_000)
    newest: dict[str, int] = {}
    late = 0
    for event in events:
        if event.kind is Kind.LATE:
            assert event.observed_ms == newest[event.subject_id] - 3 * 3_600_000
            late += 1
        elif event.kind in (Kind.VALID, Kind.SPIKE):
            assert event.observed_ms is not None
            # event time never goes back among accepted events: nothing is late by accident
            assert event.observed_ms >= max(newest.values(), default=0)
            newest[event.subject_id] = event.observed_ms
    assert late == 120


def test_the_drifting_observer_has_the_stated_bias() -> None:
    cfg = config(interval_ms=1000.0, drift_per_hour=2.0, spike_share=0.0, observers=4)
    gen = ObservationGenerator(cfg, count=20_000)
    residual: dict[str, list[float]] = defaultdict(list)
    for event in gen:
        if event.kind is not Kind.VALID:
            continue
        assert event.metric is not None and event.observed_ms is not None
        value = json.loads(event.value)["value"]
        sd = gen.noise_sd(event.metric)
        hours = (event.observed_ms - START_MS) / 3_600_000
        expected_bias = 2.0 * sd * hours if event.observer_id == "observer-03" else 0.0
        assert event.bias == pytest.approx(expected_bias)
        assert event.clean == pytest.approx(
            gen.clean_value(event.subject_id, event.metric, event.observed_ms)
        )
        # in noise units, after removing the clean signal and the stated bias
        residual[str(event.observer_id)].append((value - event.clean - expected_bias) / sd)
        # the raw distance from the clean signal grows for the drifting observer only
    assert cfg.drifting_observer == "observer-03"
    for observer, values in residual.items():
        assert abs(statistics.fmean(values)) < 0.05, observer
        assert max(abs(v) for v in values) <= 3.0 + 1e-6, observer
    assert 0.8 < statistics.stdev(residual["observer-00"]) < 1.0  # a normal clipped at 3 sd


def test_spikes_are_where_the_generator_says_and_nowhere_else() -> None:
    gen = ObservationGenerator(config(spike_share=0.05), count=5000)
    spikes = normal = 0
    for event in gen:
        if event.kind not in (Kind.VALID, Kind.SPIKE):
            continue
        assert event.metric is not None and event.clean is not None
        distance = abs(json.loads(event.value)["value"] - event.clean - event.bias)
        sd = gen.noise_sd(event.metric)
        if event.kind is Kind.SPIKE:
            assert 8 * sd - 1e-6 <= distance <= 12 * sd + 1e-6
            spikes += 1
        else:
            assert distance <= 3 * sd + 1e-6
            normal += 1
    assert spikes == 250
    assert normal > 0


def test_daily_sine_shows_in_the_clean_signal() -> None:
    gen = ObservationGenerator(config(), count=1)
    day = [gen.clean_value("s-0000", "temp", START_MS + h * 3_600_000) for h in range(24)]
    assert max(day) - min(day) == pytest.approx(8.0, rel=0.05)  # amplitude 4 either side
    assert gen.clean_value("s-0000", "temp", START_MS) == pytest.approx(
        gen.clean_value("s-0000", "temp", START_MS + 86_400_000)
    )


def test_subjects_metrics_observers_and_groups_follow_the_config() -> None:
    events = generate(5000, subjects=7, metrics=10, observers=2, groups=3, invalid_share=0.0)
    assert {e.subject_id for e in events} == {f"s-{i:04d}" for i in range(7)}
    assert len({e.metric for e in events}) == 10
    assert {e.observer_id for e in events} == {"observer-00", "observer-01"}
    assert {e.group_id for e in events} == {"group-00", "group-01", "group-02"}
    assert all(e.scopes == 2 for e in events)
    no_groups = generate(200, groups=0)
    assert all(e.group_id is None and e.scopes == 1 for e in no_groups)


def test_without_a_count_shares_are_drawn_and_reported() -> None:
    gen = ObservationGenerator(config(), count=None)
    events = [event for _, event in zip(range(20_000), gen, strict=False)]
    kinds = Counter(e.kind for e in events)
    assert kinds[Kind.INVALID] == pytest.approx(2000, rel=0.1)
    assert kinds[Kind.LATE] == pytest.approx(800, rel=0.15)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"invalid_share": 0.5, "duplicate_share": 0.5}, "less than 1"),
        ({"late_share": 1.5}, "between 0 and 1"),
        ({"subjects": 0}, "subjects must be at least 1"),
    ],
)
def test_bad_configs_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**overrides)


def test_too_few_messages_for_the_shares_are_refused() -> None:
    with pytest.raises(ValueError, match="too few"):
        exact_quotas(2, config(invalid_share=0.45, late_share=0.45, spike_share=0.0))

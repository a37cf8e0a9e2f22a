"""Load generator: realistic observations, deterministic from a seed (pure, no Kafka).

Subjects report metrics with a daily sine and bounded noise; each subject has several
observers, one of which drifts (a bias that grows with event time); a share of the values are
spikes far outside the normal range; a share of the messages are invalid, duplicates (the same
bytes sent again) or late (`observed_at` hours before the subject's newest event). Every
generated message says what it is (`Kind`), so a test or a run summary can count exactly what
was sent. With a known count the shares are exact: `round(count * share)` of each kind.
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from models.timefmt import format_utc, from_epoch_ms

__all__ = [
    "INVALID_RULES",
    "METRICS",
    "GeneratedEvent",
    "GeneratorConfig",
    "Kind",
    "MetricProfile",
    "ObservationGenerator",
    "exact_quotas",
]

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * _HOUR_MS
_NOISE_CLIP: Final = 3.0  # noise is a normal draw clipped to +-3 sd: "the normal range"
_SPIKE_MIN, _SPIKE_MAX = 8.0, 12.0  # spikes sit 8 to 12 sd away from the clean signal
_RECENT: Final = 32  # duplicates re-send one of the last 32 accepted events


class Kind(StrEnum):
    """What a generated message is; the worker treats each kind differently."""

    VALID = "valid"  # a normal observation
    SPIKE = "spike"  # a valid observation far outside the normal range
    INVALID = "invalid"  # breaks one input rule: a dead letter with reason `invalid`
    DUPLICATE = "duplicate"  # the exact bytes of an earlier valid or spike event
    LATE = "late"  # valid, but observed hours before its subject's newest event


@dataclass(frozen=True, slots=True)
class MetricProfile:
    """A metric's daily pattern: `base + amplitude * sin(2*pi*t/day)`, noise sd `noise`."""

    name: str
    unit: str
    base: float
    amplitude: float
    noise: float


METRICS: Final = (
    MetricProfile("temp", "C", 21.0, 4.0, 0.5),
    MetricProfile("humidity", "%", 45.0, 10.0, 2.0),
    MetricProfile("co2", "ppm", 600.0, 150.0, 25.0),
    MetricProfile("pressure", "hPa", 1013.0, 3.0, 0.8),
    MetricProfile("noise_db", "dB", 40.0, 12.0, 3.0),
    MetricProfile("power_w", "W", 300.0, 120.0, 15.0),
    MetricProfile("light_lux", "lx", 320.0, 280.0, 20.0),
    MetricProfile("vibration.rms", "g", 0.2, 0.05, 0.02),
)


def _invalid_documents(valid: dict[str, Any]) -> list[tuple[str, bytes]]:
    def variant(**changes: Any) -> bytes:
        return json.dumps({**valid, **changes}).encode()

    missing = {k: v for k, v in valid.items() if k != "observer_id"}
    return [
        ("value is a numeric string", variant(value=str(valid["value"]))),
        ("value is a boolean", variant(value=True)),
        ("value is null", variant(value=None)),
        ("value is NaN", variant(value=math.nan)),
        ("observer_id is missing", json.dumps(missing).encode()),
        ("observed_at is naive", variant(observed_at="2026-11-27T12:00:00")),
        ("metric has a space", variant(metric="temp reading")),
        ("subject_id is empty", variant(subject_id="")),
        ("unknown field", variant(atributes={"unit": "C"})),
        ("attribute value is not a string", variant(attributes={"floor": 3})),
        ("not an object", json.dumps([valid["subject_id"], valid["value"]]).encode()),
    ]


INVALID_RULES: Final = tuple(
    rule
    for rule, _ in _invalid_documents(
        {"subject_id": "s", "value": 0.0, "observed_at": 0, "observer_id": "o"}
    )
)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Shares are fractions of all messages; times are epoch ms."""

    start_ms: int
    seed: int = 0
    subjects: int = 50
    metrics: int = 4
    observers: int = 3
    groups: int = 5
    interval_ms: float = 100.0
    invalid_share: float = 0.0
    duplicate_share: float = 0.0
    late_share: float = 0.0
    spike_share: float = 0.0
    late_by_ms: int = 3 * _HOUR_MS
    drift_per_hour: float = 2.0
    epoch_ms_share: float = 0.1

    def __post_init__(self) -> None:
        for name in ("subjects", "metrics", "observers"):
            if getattr(self, name) < 1:
                msg = f"{name} must be at least 1"
                raise ValueError(msg)
        if self.groups < 0:
            msg = "groups must be 0 (no group_id) or more"
            raise ValueError(msg)
        if self.interval_ms < 0 or self.late_by_ms <= 0:
            msg = "the interval must be >= 0 and late-by > 0"
            raise ValueError(msg)
        shares = self.shares()
        for kind, share in shares.items():
            if not 0.0 <= share <= 1.0:
                msg = f"the {kind} share must be between 0 and 1, not {share}"
                raise ValueError(msg)
        if sum(shares.values()) >= 1.0:
            msg = "the invalid, duplicate, late and spike shares must add up to less than 1"
            raise ValueError(msg)

    def shares(self) -> dict[Kind, float]:
        """The asked share of every kind but `valid` (which takes the rest)."""
        return {
            Kind.INVALID: self.invalid_share,
            Kind.DUPLICATE: self.duplicate_share,
            Kind.LATE: self.late_share,
            Kind.SPIKE: self.spike_share,
        }

    @property
    def drifting_observer(self) -> str:
        """The observer whose bias grows: the last one of every subject."""
        return observer_name(self.observers - 1)


def observer_name(index: int) -> str:
    """Observer ids are shared by all subjects (a fleet of stations, say)."""
    return f"observer-{index:02d}"


def exact_quotas(count: int, config: GeneratorConfig) -> dict[Kind, int]:
    """How many messages of each kind `count` messages hold: `round(count * share)` each,
    the rest valid."""
    quotas = {kind: math.floor(count * share + 0.5) for kind, share in config.shares().items()}
    quotas[Kind.VALID] = count - sum(quotas.values())
    if quotas[Kind.VALID] < 0 or (
        quotas[Kind.DUPLICATE] + quotas[Kind.LATE] > 0
        and quotas[Kind.VALID] + quotas[Kind.SPIKE] == 0
    ):
        msg = f"{count} messages are too few for these shares"
        raise ValueError(msg)
    return quotas


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One message to send, and what it is. `document` is None for invalid messages."""

    key: bytes
    value: bytes
    kind: Kind
    event_id: str | None
    subject_id: str
    group_id: str | None
    observer_id: str | None
    metric: str | None
    observed_ms: int | None
    clean: float | None = None  # the noiseless signal at observed_ms (no bias)
    bias: float = 0.0  # the drifting observer's bias at observed_ms
    rule: str | None = None  # which input rule an invalid message breaks
    duplicate_of: str | None = None

    @property
    def scopes(self) -> int:
        """Aggregation scopes the worker counts it in: the subject, and its group if any."""
        return 2 if self.group_id is not None else 1


@dataclass
class _Subject:
    name: str
    group: str | None
    offsets: dict[str, float]
    phase_ms: int
    last_seen_ms: int | None = None


@dataclass
class ObservationGenerator:
    """Iterate to get `GeneratedEvent`s; with `count` set the iterator stops there."""

    config: GeneratorConfig
    count: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.config.seed)  # noqa: S311  (test data, not secrets)
        c = self.config
        self.metric_profiles = [_profile(i) for i in range(c.metrics)]
        self.subjects = [self._subject(i) for i in range(c.subjects)]
        self.quotas = exact_quotas(self.count, c) if self.count is not None else None
        self.run_id = f"{c.seed:x}"

    def _subject(self, index: int) -> _Subject:
        c, rng = self.config, self._rng
        offsets = {m.name: rng.uniform(-0.5, 0.5) * m.amplitude for m in self.metric_profiles}
        group = f"group-{index % c.groups:02d}" if c.groups else None
        return _Subject(f"s-{index:04d}", group, offsets, rng.randrange(0, _DAY_MS))

    # -- the signal -------------------------------------------------------------------

    def clean_value(self, subject: str, metric: str, t_ms: int) -> float:
        """The noiseless value of a subject's metric at time t (daily sine)."""
        s = self.subjects[int(subject.removeprefix("s-"))]
        m = next(p for p in self.metric_profiles if p.name == metric)
        angle = 2 * math.pi * ((t_ms + s.phase_ms) % _DAY_MS) / _DAY_MS
        return m.base + s.offsets[m.name] + m.amplitude * math.sin(angle)

    def bias(self, observer: str, metric: str, t_ms: int) -> float:
        """The drifting observer's bias: `drift_per_hour * noise sd * hours since start`."""
        if observer != self.config.drifting_observer:
            return 0.0
        m = next(p for p in self.metric_profiles if p.name == metric)
        hours = max(0, t_ms - self.config.start_ms) / _HOUR_MS
        return self.config.drift_per_hour * m.noise * hours

    def noise_sd(self, metric: str) -> float:
        """The metric's noise standard deviation (normal values lie within 3 of them)."""
        return next(p.noise for p in self.metric_profiles if p.name == metric)

    # -- iteration --------------------------------------------------------------------

    def __iter__(self) -> Iterator[GeneratedEvent]:
        c, rng = self.config, self._rng
        remaining = dict(self.quotas) if self.quotas is not None else None
        recent: deque[GeneratedEvent] = deque(maxlen=_RECENT)
        i = 0
        while self.count is None or i < self.count:
            t_ms = c.start_ms + math.floor(i * c.interval_ms)
            kind = self._draw(remaining, accepted=bool(recent))
            if kind is Kind.DUPLICATE:
                original = rng.choice(recent)
                event = GeneratedEvent(
                    original.key,
                    original.value,
                    Kind.DUPLICATE,
                    original.event_id,
                    original.subject_id,
                    original.group_id,
                    original.observer_id,
                    original.metric,
                    original.observed_ms,
                    original.clean,
                    original.bias,
                    duplicate_of=original.event_id,
                )
            elif kind is Kind.LATE:
                subject = self.subjects[int(rng.choice(recent).subject_id.removeprefix("s-"))]
                assert subject.last_seen_ms is not None
                event = self._observation(i, subject, subject.last_seen_ms - c.late_by_ms, kind)
            else:
                subject = rng.choice(self.subjects)
                event = self._observation(i, subject, t_ms, kind)
                if kind is not Kind.INVALID:
                    subject.last_seen_ms = t_ms
                    recent.append(event)
            yield event
            i += 1

    def _draw(self, remaining: dict[Kind, int] | None, *, accepted: bool) -> Kind:
        """The next kind: from the exact quotas left (an urn), or by the shares."""
        rng = self._rng
        needs_earlier = (Kind.DUPLICATE, Kind.LATE)
        if remaining is None:
            roll, edge = rng.random(), 0.0
            for kind, share in self.config.shares().items():
                edge += share
                if roll < edge:
                    return kind if accepted or kind not in needs_earlier else Kind.VALID
            return Kind.VALID
        kinds = [k for k, n in remaining.items() if n > 0 and (accepted or k not in needs_earlier)]
        pick = rng.choices(kinds, weights=[remaining[k] for k in kinds])[0]
        remaining[pick] -= 1
        return pick

    def _observation(self, i: int, subject: _Subject, t_ms: int, kind: Kind) -> GeneratedEvent:
        c, rng = self.config, self._rng
        metric = rng.choice(self.metric_profiles)
        observer = observer_name(rng.randrange(c.observers))
        clean = self.clean_value(subject.name, metric.name, t_ms)
        bias = self.bias(observer, metric.name, t_ms)
        if kind is Kind.SPIKE:
            deviation = rng.choice((-1, 1)) * rng.uniform(_SPIKE_MIN, _SPIKE_MAX) * metric.noise
        else:
            deviation = max(-_NOISE_CLIP, min(_NOISE_CLIP, rng.gauss(0.0, 1.0))) * metric.noise
        event_id = f"gen-{self.run_id}-{i}"
        observed_at: str | int = (
            t_ms if rng.random() < c.epoch_ms_share else format_utc(from_epoch_ms(t_ms))
        )
        document: dict[str, Any] = {
            "event_id": event_id,
            "observer_id": observer,
            "subject_id": subject.name,
            "metric": metric.name,
            "value": round(clean + bias + deviation, 6),
            "observed_at": observed_at,
        }
        if subject.group is not None:
            document["group_id"] = subject.group
        document["attributes"] = {"unit": metric.unit, "source": "observer-insights produce"}
        key = subject.name.encode()
        if kind is Kind.INVALID:
            rule, value = rng.choice(_invalid_documents(document))
            return GeneratedEvent(
                key, value, kind, None, subject.name, None, None, None, None, rule=rule
            )
        value = json.dumps(document, separators=(",", ":")).encode()
        return GeneratedEvent(
            key,
            value,
            kind,
            event_id,
            subject.name,
            subject.group,
            observer,
            metric.name,
            t_ms,
            clean,
            bias,
        )


def _profile(index: int) -> MetricProfile:
    if index < len(METRICS):
        return METRICS[index]
    return MetricProfile(f"metric-{index:03d}", "1", 100.0, 20.0, 2.0)

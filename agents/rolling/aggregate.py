"""The window aggregate: create, add, merge, finish. Pure and mergeable: merging partial
aggregates in any split gives the aggregate of all values at once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agents.rolling.sketch import QuantileSketch

__all__ = ["Aggregate", "Summary"]


def _add_partial(partials: list[float], x: float) -> None:
    """Shewchuk's exact summation step: `partials` stays a non-overlapping expansion."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


@dataclass(frozen=True, slots=True)
class Summary:
    """The finished figures of one aggregate."""

    count: int
    sum: float
    mean: float
    min: float
    max: float
    stddev: float | None
    p50: float
    p90: float
    p99: float
    first_value: float
    last_value: float
    first_ms: int
    last_ms: int
    observers: int
    per_observer: tuple[tuple[str, int, float, int], ...]  # (observer, count, sum, last ms)


class Aggregate:
    """count, exact sum, Welford mean/M2, min, max, first/last by (observed_at, event_id),
    per-observer count and sum, and a quantile sketch."""

    __slots__ = (
        "count",
        "first",
        "last",
        "m2",
        "max",
        "mean",
        "min",
        "observers",
        "partials",
        "sketch",
    )

    def __init__(self) -> None:
        self.count = 0
        self.partials: list[float] = []
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        # (observed_ms, event_id, value): ties on time are broken by event id, so the
        # result does not depend on arrival order.
        self.first: tuple[int, str, float] | None = None
        self.last: tuple[int, str, float] | None = None
        self.observers: dict[str, list[float]] = {}  # observer -> [count, sum, last ms]
        self.sketch = QuantileSketch()

    def add(self, value: float, observed_ms: int, event_id: str, observer: str) -> None:
        """Fold one observation in."""
        self.count += 1
        _add_partial(self.partials, value)
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        point = (observed_ms, event_id, value)
        if self.first is None or point[:2] < self.first[:2]:
            self.first = point
        if self.last is None or point[:2] > self.last[:2]:
            self.last = point
        stats = self.observers.get(observer)
        if stats is None:
            self.observers[observer] = [1, value, observed_ms]
        else:
            stats[0] += 1
            stats[1] += value
            if observed_ms > stats[2]:
                stats[2] = observed_ms
        self.sketch.add(value)

    def merge(self, other: Aggregate) -> None:
        """Fold another aggregate in (Chan et al. for mean and M2)."""
        if other.count == 0:
            return
        if self.count == 0:
            self.mean, self.m2 = other.mean, other.m2
        else:
            total = self.count + other.count
            delta = other.mean - self.mean
            self.mean += delta * other.count / total
            self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count += other.count
        for part in other.partials:
            _add_partial(self.partials, part)
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.first is not None and (self.first is None or other.first[:2] < self.first[:2]):
            self.first = other.first
        if other.last is not None and (self.last is None or other.last[:2] > self.last[:2]):
            self.last = other.last
        for observer, (n, total_value, last_ms) in other.observers.items():
            stats = self.observers.get(observer)
            if stats is None:
                self.observers[observer] = [n, total_value, last_ms]
            else:
                stats[0] += n
                stats[1] += total_value
                stats[2] = max(stats[2], last_ms)
        self.sketch.merge(other.sketch)

    @classmethod
    def merged(cls, parts: list[Aggregate]) -> Aggregate:
        """A new aggregate of all `parts` (the parts are not changed)."""
        result = cls()
        for part in parts:
            result.merge(part)
        return result

    def finish(self) -> Summary:
        """The figures of this aggregate; it must hold at least one value."""
        if self.count == 0 or self.first is None or self.last is None:
            msg = "an empty aggregate has no summary"
            raise ValueError(msg)
        total = math.fsum(self.partials)
        stddev = math.sqrt(max(self.m2, 0.0) / (self.count - 1)) if self.count > 1 else None
        p50, p90, p99 = self.sketch.quantiles((0.5, 0.9, 0.99))
        return Summary(
            count=self.count,
            sum=total,
            mean=total / self.count,
            min=self.min,
            max=self.max,
            stddev=stddev,
            p50=p50,
            p90=p90,
            p99=p99,
            first_value=self.first[2],
            last_value=self.last[2],
            first_ms=self.first[0],
            last_ms=self.last[0],
            observers=len(self.observers),
            per_observer=tuple(
                sorted((o, int(n), float(v), int(t)) for o, (n, v, t) in self.observers.items())
            ),
        )

    def to_state(self) -> list[Any]:
        """A JSON-ready form for the changelog."""
        return [
            self.count,
            self.partials,
            self.mean,
            self.m2,
            self.min,
            self.max,
            list(self.first) if self.first else None,
            list(self.last) if self.last else None,
            self.observers,
            self.sketch.to_state(),
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> Aggregate:
        """Inverse of `to_state`."""
        agg = cls()
        count, partials, mean, m2, low, high, first, last, observers, sketch = state
        agg.count = int(count)
        agg.partials = [float(p) for p in partials]
        agg.mean, agg.m2 = float(mean), float(m2)
        agg.min, agg.max = float(low), float(high)
        agg.first = (int(first[0]), str(first[1]), float(first[2])) if first else None
        if last == first:  # one value: one shared point, as `add` makes it
            agg.last = agg.first
        else:
            agg.last = (int(last[0]), str(last[1]), float(last[2])) if last else None
        agg.observers = {str(k): [v[0], v[1], v[2]] for k, v in observers.items()}
        agg.sketch = QuantileSketch.from_state(sketch)
        return agg

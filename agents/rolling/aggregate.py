"""The window aggregates: create, add, merge, finish. Pure and mergeable: merging partial
aggregates in any split gives the aggregate of all values at once.

Two kinds, chosen by `INSIGHTS_AGGREGATES`: `Aggregate` keeps every figure of the contract
(`full`); `BasicAggregate` only count, exact sum, min, max and the first and last
`observed_at` (`basic`), for a fraction of the CPU per event. Each restores the other's
changelog state (the setting changed across a restart): full state becomes basic exactly;
basic state becomes a full aggregate that knows only the basic figures
(`Aggregate.basic_only`), and so do the windows it is part of.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Final, NamedTuple, Self

from agents.rolling.distinct import DistinctCounter
from agents.rolling.sketch import QuantileSketch

__all__ = [
    "AGGREGATE_KINDS",
    "Aggregate",
    "BasicAggregate",
    "OneValue",
    "Pane",
    "PaneAggregate",
    "Summary",
]


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


class Summary(NamedTuple):
    """The finished figures of one aggregate; None where the aggregate does not keep one
    (`BasicAggregate`), and `stddev` below two values. (A named tuple: one is made per
    change and final, and it is built three times faster than a frozen dataclass.)"""

    count: int  # type: ignore[assignment]  # (hides tuple.count, unused on a Summary)
    sum: float
    mean: float
    min: float
    max: float
    stddev: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    first_value: float | None = None
    last_value: float | None = None
    first_ms: int | None = None
    last_ms: int | None = None
    observers: int | None = None
    # (observer, count, sum, last ms), by observer; empty when not kept or not asked for
    per_observer: tuple[tuple[str, int, float, int], ...] = ()
    # More observers than `Aggregate.max_observers`: `per_observer` holds the first of them
    # only, and `observers` is estimated (`DistinctCounter`).
    observers_truncated: bool = False


_NO_TIME: Final = 1 << 62  # first_ms of an empty basic aggregate (-: its last_ms)
_BASIC_STATE_LEN: Final = 6  # BasicAggregate.to_state: count, partials, min, max, first, last
_FULL_STATE_LEN: Final = 10  # Aggregate.to_state, without its observer overflow


def _basic_summary(
    count: int, partials: list[float], low: float, high: float, first_ms: int, last_ms: int
) -> Summary:
    if count == 0:
        msg = "an empty aggregate has no summary"
        raise ValueError(msg)
    total = math.fsum(partials)
    return Summary(
        count=count,
        sum=total,
        mean=total / count,
        min=low,
        max=high,
        first_ms=first_ms,
        last_ms=last_ms,
    )


class PaneAggregate:
    """What both kinds of pane aggregate do; `merged` is shared, built on `merge`."""

    __slots__ = ()

    count: int

    def add(self, value: float, observed_ms: int, event_id: str, observer: str) -> None:
        raise NotImplementedError

    def merge(self, other: Self) -> None:
        raise NotImplementedError

    def finish(self, per_observer: bool = True) -> Summary:
        """The figures; `per_observer` False leaves `Summary.per_observer` empty (only
        observer consensus reads it, on finals)."""
        raise NotImplementedError

    def to_state(self) -> list[Any]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: list[Any]) -> Self:
        raise NotImplementedError

    def absorb(self, part: Self | OneValue) -> None:
        """Fold in a pane, whichever form it is kept in (`part` is not changed)."""
        if isinstance(part, OneValue):
            self.add(part.value, part.observed_ms, part.event_id, part.observer)
        else:
            self.merge(part)

    @classmethod
    def merged(cls, parts: Sequence[Self | OneValue]) -> Self:
        """A new aggregate of all `parts` (the parts are not changed)."""
        result = cls()
        for part in parts:
            result.absorb(part)
        return result


class OneValue:
    """A pane holding a single observation, kept as that observation until a second one
    makes it an aggregate of its kind (`PaneAggregate.merged((one,))`).

    With 100,000 keys that each saw one value (a burst of new subjects), a full `Aggregate`
    of one value is ~850 B (partials, per-observer dict and list, sketch and bins, first
    tuple); this is 64. Every figure is computed from the aggregate grown from it, so the
    records and the changelog state are those of the aggregate it stands for.
    """

    __slots__ = ("event_id", "observed_ms", "observer", "value")

    def __init__(self, value: float, observed_ms: int, event_id: str, observer: str) -> None:
        self.value = value
        self.observed_ms = observed_ms
        self.event_id = event_id
        self.observer = observer

    @classmethod
    def of_state(cls, state: list[Any], kind: type[PaneAggregate]) -> OneValue | None:
        """The single observation of a changelog state of one value, when the `kind` grown
        from it gives that state back (not for basic state restored as full: `basic_only`)."""
        if state[0] != 1:
            return None
        if len(state) != _BASIC_STATE_LEN:  # full: ..., first, last, observers, sketch
            (observer,) = state[8]
            first = state[6]
            return cls(float(first[2]), int(first[0]), str(first[1]), str(observer))
        if kind is BasicAggregate:  # ids and observers are not kept: never asked for
            return cls(float(state[2]), int(state[4]), "", "")
        return None


Pane = PaneAggregate | OneValue  # a pane as kept: one value as it (memory), more aggregated


class BasicAggregate(PaneAggregate):
    """count, exact sum, min, max, first and last `observed_at`: `INSIGHTS_AGGREGATES=basic`."""

    __slots__ = ("count", "first_ms", "last_ms", "max", "min", "partials")

    def __init__(self) -> None:
        self.count = 0
        self.partials: list[float] = []
        self.min = math.inf
        self.max = -math.inf
        self.first_ms = _NO_TIME
        self.last_ms = -_NO_TIME

    def add(self, value: float, observed_ms: int, event_id: str, observer: str) -> None:
        """Fold one observation in (its id and observer are not kept)."""
        self.count += 1
        _add_partial(self.partials, value)
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if observed_ms < self.first_ms:
            self.first_ms = observed_ms
        if observed_ms > self.last_ms:
            self.last_ms = observed_ms

    def merge(self, other: BasicAggregate) -> None:
        """Fold another aggregate in."""
        self.count += other.count
        for part in other.partials:
            _add_partial(self.partials, part)
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.first_ms = min(self.first_ms, other.first_ms)
        self.last_ms = max(self.last_ms, other.last_ms)

    def finish(self, per_observer: bool = True) -> Summary:
        """The figures of this aggregate; it must hold at least one value."""
        return _basic_summary(
            self.count, self.partials, self.min, self.max, self.first_ms, self.last_ms
        )

    def to_state(self) -> list[Any]:
        """A JSON-ready form for the changelog."""
        return [self.count, self.partials, self.min, self.max, self.first_ms, self.last_ms]

    @classmethod
    def from_state(cls, state: list[Any]) -> BasicAggregate:
        """Inverse of `to_state`; also takes `Aggregate.to_state` (its basic figures)."""
        agg = cls()
        if len(state) == _BASIC_STATE_LEN:
            count, partials, low, high, first_ms, last_ms = state
        else:
            count, partials, _, _, low, high, first, last = state[:8]
            first_ms, last_ms = first[0], last[0]
        agg.count = int(count)
        agg.partials = [float(p) for p in partials]
        agg.min, agg.max = float(low), float(high)
        agg.first_ms, agg.last_ms = int(first_ms), int(last_ms)
        return agg


class Aggregate(PaneAggregate):
    """count, exact sum, Welford mean/M2, min, max, first/last by (observed_at, event_id),
    per-observer count and sum, and a quantile sketch: `INSIGHTS_AGGREGATES=full`.

    `basic_only`: it holds values restored from a `BasicAggregate`'s state, whose other
    figures were never kept; its summary (and that of every merge it is part of) then
    gives only the basic figures, never ones computed from part of the values.
    """

    __slots__ = (
        "basic_only",
        "count",
        "first",
        "last",
        "m2",
        "max",
        "mean",
        "min",
        "observers",
        "overflow",
        "partials",
        "sketch",
    )

    # Observers whose figures a pane (or window) keeps, at most: `capped` makes a kind with
    # another bound (INSIGHTS_MAX_OBSERVERS_PER_WINDOW).
    max_observers: ClassVar[int] = 100

    @classmethod
    def capped(cls, max_observers: int) -> type[Aggregate]:
        """This kind keeping figures of at most `max_observers` observers."""
        return type(cls.__name__, (cls,), {"__slots__": (), "max_observers": max_observers})

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
        # Beyond `max_observers`: counts every observer (also those in `observers`).
        self.overflow: DistinctCounter | None = None
        self.sketch = QuantileSketch()
        self.basic_only = False

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
        # First/last by (observed_ms, event_id), compared without building tuples to slice
        # (first <= last: a point before the first is never after the last).
        first, last = self.first, self.last
        if first is None or last is None:
            self.first = self.last = (observed_ms, event_id, value)
        elif observed_ms < first[0] or (observed_ms == first[0] and event_id < first[1]):
            self.first = (observed_ms, event_id, value)
        elif observed_ms > last[0] or (observed_ms == last[0] and event_id > last[1]):
            self.last = (observed_ms, event_id, value)
        stats = self.observers.get(observer)
        if stats is None:
            self._new_observer(observer, [1, value, observed_ms])
        else:
            stats[0] += 1
            stats[1] += value
            if observed_ms > stats[2]:
                stats[2] = observed_ms
        self.sketch.add(value)

    def _new_observer(self, observer: str, stats: list[float]) -> None:
        """Keep a new observer's figures while there is room; count it either way."""
        observers = self.observers
        if len(observers) < self.max_observers:
            observers[observer] = stats
            if self.overflow is not None:
                self.overflow.add(observer)
            return
        if self.overflow is None:
            self.overflow = DistinctCounter()
            self.overflow.add_all(observers)
        self.overflow.add(observer)

    def merge(self, other: Aggregate) -> None:
        """Fold another aggregate in (Chan et al. for mean and M2)."""
        if other.count == 0:
            return
        if self.count == 0:
            self._copy(other)
            return
        if other.basic_only:
            self.basic_only = True
        count, theirs_count = self.count, other.count
        total = count + theirs_count
        delta = other.mean - self.mean
        self.mean += delta * theirs_count / total
        self.m2 += other.m2 + delta * delta * count * theirs_count / total
        self.count = total
        partials = self.partials
        for part in other.partials:
            _add_partial(partials, part)
        if other.min < self.min:
            self.min = other.min
        if other.max > self.max:
            self.max = other.max
        # other.count > 0 here, so both have a first and a last point (compared by time,
        # then id, without building slices).
        first, theirs = self.first, other.first
        if first is None or (
            theirs is not None
            and (theirs[0] < first[0] or (theirs[0] == first[0] and theirs[1] < first[1]))
        ):
            self.first = theirs
        last, theirs = self.last, other.last
        if last is None or (
            theirs is not None
            and (theirs[0] > last[0] or (theirs[0] == last[0] and theirs[1] > last[1]))
        ):
            self.last = theirs
        if other.overflow is not None:
            if self.overflow is None:
                self.overflow = DistinctCounter()
                self.overflow.add_all(self.observers)
            self.overflow.merge(other.overflow)
        observers = self.observers
        for observer, (n, total_value, last_ms) in other.observers.items():
            stats = observers.get(observer)
            if stats is None:
                self._new_observer(observer, [n, total_value, last_ms])
            else:
                stats[0] += n
                stats[1] += total_value
                if last_ms > stats[2]:
                    stats[2] = last_ms
        self.sketch.merge(other.sketch)

    def _copy(self, other: Aggregate) -> None:
        """Become a copy of `other` (sharing only immutable parts): the first merge into
        an empty aggregate, as every window of several panes starts."""
        self.count, self.mean, self.m2 = other.count, other.mean, other.m2
        self.partials = other.partials.copy()
        self.min, self.max = other.min, other.max
        self.first, self.last = other.first, other.last
        self.observers = {k: v.copy() for k, v in other.observers.items()}
        self.overflow = other.overflow.copy() if other.overflow is not None else None
        self.sketch = other.sketch.copy()
        self.basic_only = self.basic_only or other.basic_only

    def finish(self, per_observer: bool = True) -> Summary:
        """The figures of this aggregate; it must hold at least one value."""
        if self.basic_only:
            return self._basic().finish()
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
            observers=len(self.observers)
            if self.overflow is None
            else max(self.overflow.estimate(), self.max_observers + 1),
            per_observer=tuple(
                sorted((o, int(n), float(v), int(t)) for o, (n, v, t) in self.observers.items())
            )
            if per_observer
            else (),
            observers_truncated=self.overflow is not None,
        )

    def to_state(self) -> list[Any]:
        """A JSON-ready form for the changelog."""
        if self.basic_only:
            return self._basic().to_state()
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
            *((self.overflow.to_state(),) if self.overflow is not None else ()),
        ]

    def _basic(self) -> BasicAggregate:
        """The basic figures of a `basic_only` aggregate, as the basic kind holds them."""
        basic = BasicAggregate()
        basic.count, basic.partials, basic.min, basic.max = (
            self.count,
            self.partials,
            self.min,
            self.max,
        )
        if self.first is not None and self.last is not None:
            basic.first_ms, basic.last_ms = self.first[0], self.last[0]
        return basic

    @classmethod
    def from_state(cls, state: list[Any]) -> Aggregate:
        """Inverse of `to_state`; also takes `BasicAggregate.to_state` (`basic_only`)."""
        agg = cls()
        if len(state) == _BASIC_STATE_LEN:
            basic = BasicAggregate.from_state(state)
            agg.count, agg.partials, agg.min, agg.max = (
                basic.count,
                basic.partials,
                basic.min,
                basic.max,
            )
            # Times only (ids sort after ""; the values are never reported).
            agg.first = (basic.first_ms, "", math.nan)
            agg.last = (basic.last_ms, "", math.nan)
            agg.basic_only = True
            return agg
        count, partials, mean, m2, low, high, first, last, observers, sketch = state[:10]
        if len(state) > _FULL_STATE_LEN:  # observers beyond the bound were counted
            agg.overflow = DistinctCounter.from_state(state[_FULL_STATE_LEN])
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


AGGREGATE_KINDS: Final[dict[str, type[PaneAggregate]]] = {
    "full": Aggregate,
    "basic": BasicAggregate,
}

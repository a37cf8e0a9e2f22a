"""A mergeable quantile sketch with 1% relative error: DDSketch's logarithmic mapping
(from the `ddsketch` library) over sparse bins, so small windows stay small in memory and in
the changelog; at most `MAX_BINS` bins per sign, so no window's grows without bound."""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import accumulate
from typing import Any, Final

from ddsketch.mapping import LogarithmicMapping

__all__ = ["MAX_BINS", "RELATIVE_ACCURACY", "QuantileSketch"]

RELATIVE_ACCURACY: Final = 0.01
# Bins per sign at most (DDSketch's collapsing-lowest store): 1% accuracy over a factor of
# ~7.6e8 of magnitudes per sign; values below that range share the lowest bin. Bounds a
# pane's sketch (~15 KB in the changelog per sign) whatever values arrive.
MAX_BINS: Final = 1024
_MAPPING: Final = LogarithmicMapping(RELATIVE_ACCURACY)
_MIN_POSITIVE: Final = _MAPPING.min_possible
# `_MAPPING.key(v)` inlined in `add` (two method calls fewer per value), the same arithmetic:
# int(ceil(log2(v) * multiplier) + offset). tests/unit/test_aggregate.py holds the two equal.
_MULTIPLIER: Final[float] = _MAPPING._multiplier
_OFFSET: Final[float] = _MAPPING._offset
# The bins of a side no value has fallen on yet, shared (never written): most metrics are
# never negative, and an empty dict per window pane is 64 bytes of 100,000 keys' state.
_NO_BINS: Final[dict[int, int]] = {}
# The value each bucket key stands for (`_MAPPING.value`: a power per call), remembered: keys
# are bounded (about ±36,000 over the whole float range at 1% accuracy).
_BUCKET_VALUES: dict[int, float] = {}


def _collapse(bins: dict[int, int]) -> None:
    """Fold the lowest keys (the smallest magnitudes) into one so `MAX_BINS` remain."""
    keys = sorted(bins)
    cut = len(keys) - MAX_BINS
    floor = keys[cut]
    bins[floor] += sum(bins.pop(key) for key in keys[:cut])


def _bucket_value(key: int) -> float:
    value = _BUCKET_VALUES.get(key)
    if value is None:
        value = _BUCKET_VALUES[key] = float(_MAPPING.value(key))
    return value


class QuantileSketch:
    """Counts per logarithmic bucket; quantiles within 1% of the true value (DDSketch)."""

    __slots__ = ("count", "negative", "positive", "zero")

    def __init__(self) -> None:
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = _NO_BINS
        self.zero = 0
        self.count = 0

    def add(self, value: float) -> None:
        """Count one value."""
        if value > _MIN_POSITIVE:
            key = int(math.ceil(math.log(value, 2) * _MULTIPLIER) + _OFFSET)
            bins = self.positive
        elif value < -_MIN_POSITIVE:
            key = int(math.ceil(math.log(-value, 2) * _MULTIPLIER) + _OFFSET)
            if self.negative is _NO_BINS:
                self.negative = {}
            bins = self.negative
        else:
            self.zero += 1
            self.count += 1
            return
        n = bins.get(key)
        if n is None:
            bins[key] = 1
            if len(bins) > MAX_BINS:
                _collapse(bins)
        else:
            bins[key] = n + 1
        self.count += 1

    def merge(self, other: QuantileSketch) -> None:
        """Add every value counted by `other` (the result is as if added one by one)."""
        bins = self.positive
        get = bins.get
        for key, n in other.positive.items():
            bins[key] = get(key, 0) + n
        if other.negative:
            if self.negative is _NO_BINS:
                self.negative = {}
            bins = self.negative
            for key, n in other.negative.items():
                bins[key] = bins.get(key, 0) + n
        self.zero += other.zero
        self.count += other.count
        if len(self.positive) > MAX_BINS:
            _collapse(self.positive)
        if len(self.negative) > MAX_BINS:
            _collapse(self.negative)

    def copy(self) -> QuantileSketch:
        """An independent copy."""
        sketch = QuantileSketch()
        sketch.positive = self.positive.copy()
        if self.negative:
            sketch.negative = self.negative.copy()
        sketch.zero, sketch.count = self.zero, self.count
        return sketch

    def quantile(self, q: float) -> float:
        """The value at quantile `q` (DDSketch's rank rule: rank = q * (count - 1))."""
        if self.count == 0 or not 0.0 <= q <= 1.0:
            msg = f"quantile {q} of a sketch holding {self.count} values"
            raise ValueError(msg)
        rank = q * (self.count - 1)
        negatives = sum(self.negative.values())
        if rank < negatives:
            # Negative values: walk from the most negative (largest key) upwards.
            running = 0
            for key in sorted(self.negative, reverse=True):
                running += self.negative[key]
                if running > rank:
                    return -_bucket_value(key)
        if rank < negatives + self.zero:
            return 0.0
        running = negatives + self.zero
        last = 0
        for key in sorted(self.positive):
            last = key
            running += self.positive[key]
            if running > rank:
                return _bucket_value(key)
        return _bucket_value(last)

    def quantiles(self, qs: tuple[float, ...]) -> tuple[float, ...]:
        """Several quantiles at once (ascending `qs`), with one sort of the buckets; the
        same values as `quantile` for each."""
        if not self.negative:
            if self.count == 0:
                msg = f"quantiles of a sketch holding {self.count} values"
                raise ValueError(msg)
            # The bucket of a rank: the first whose running count (zeros first) exceeds it,
            # found by bisection over the running counts (no Python loop over the buckets).
            keys = sorted(self.positive)
            running = list(accumulate(map(self.positive.__getitem__, keys), initial=self.zero))
            result: list[float] = []
            for q in qs:
                rank = q * (self.count - 1)
                if rank < self.zero:
                    result.append(0.0)
                    continue
                i = min(bisect_right(running, rank, 1), len(keys))  # running[i] > rank
                result.append(_bucket_value(keys[i - 1]))
            return tuple(result)
        return tuple(self.quantile(q) for q in qs)

    def to_state(self) -> list[Any]:
        """A JSON-ready form for the changelog."""
        return [list(self.positive.items()), list(self.negative.items()), self.zero]

    @classmethod
    def from_state(cls, state: list[Any]) -> QuantileSketch:
        """Inverse of `to_state`."""
        sketch = cls()
        positive, negative, zero = state
        sketch.positive = {int(k): int(n) for k, n in positive}
        if negative:
            sketch.negative = {int(k): int(n) for k, n in negative}
        sketch.zero = int(zero)
        sketch.count = sum(sketch.positive.values()) + sum(sketch.negative.values()) + sketch.zero
        return sketch

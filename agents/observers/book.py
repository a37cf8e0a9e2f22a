"""Per-observer drift bookkeeping of one partition of the observer-scores stream (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

__all__ = [
    "SCORES_PER_RECORD",
    "ObserverBook",
    "ObserverStatus",
    "Score",
    "ScoreRow",
    "decode_scores",
    "encode_scores",
]


@dataclass(frozen=True, slots=True)
class Score:
    """One observer's standing in one scored window."""

    observer_id: str
    deviation: float
    outlier: bool
    window_end_ms: int
    window_size_ms: int
    last_seen_ms: int


# A `Score` on the observer-scores topic (the internal record between the agents): its
# fields in order. A record holds the rows of one observer from one flush, oldest first
# (`encode_scores`): one record per observer per flush instead of one per scored window.
ScoreRow = tuple[str, float, bool, int, int, int]
SCORES_PER_RECORD: Final = 1000  # rows per record: ~70 KB, far below a broker's 1 MiB


def encode_scores(rows: Sequence[ScoreRow]) -> bytes:
    """One observer-scores record of `rows` (at most `SCORES_PER_RECORD`)."""
    return orjson.dumps(rows)


def decode_scores(raw: bytes) -> list[Score]:
    """The scores of one record, in order; also a lone row, as records were written up to
    2026-12-05 (one per scored window), so a rolling upgrade reads what is in flight."""
    value = orjson.loads(raw)
    if value and not isinstance(value[0], list):
        value = [value]
    return [Score(*row) for row in value]


@dataclass(slots=True)
class ObserverStatus:
    """The running figures of one observer."""

    windows_scored: int = 0
    outlier_windows: int = 0
    drift_score: float = 0.0
    last_seen_ms: int = 0
    last_window_end_ms: int = 0
    window_size_ms: int = 0
    stale: bool = False

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            [
                self.windows_scored,
                self.outlier_windows,
                self.drift_score,
                self.last_seen_ms,
                self.last_window_end_ms,
                self.window_size_ms,
                self.stale,
            ]
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> ObserverStatus:
        return cls(*orjson.loads(raw))


class ObserverBook:
    """Drift score = exponentially smoothed |deviation| over scored windows; an observer
    whose latest window ends `stale_windows` window sizes before the newest scored window
    of its partition is stale (reported once, until it is seen again); one whose latest
    window ends `history_ttl_ms` before that is forgotten (`take_expired`)."""

    def __init__(
        self, drift_alpha: float, stale_windows: int, history_ttl_ms: int | None = None
    ) -> None:
        self.drift_alpha = drift_alpha
        self.stale_windows = stale_windows
        self.history_ttl_ms = history_ttl_ms
        self.observers: dict[str, ObserverStatus] = {}
        self.newest_end_ms = 0
        self._changed: set[str] = set()

    def score(self, score: Score) -> None:
        """Fold one window's standing in."""
        status = self.observers.get(score.observer_id)
        if status is None:
            status = self.observers[score.observer_id] = ObserverStatus()
        magnitude = abs(score.deviation)
        if status.windows_scored == 0:
            status.drift_score = magnitude
        else:
            a = self.drift_alpha
            status.drift_score = a * magnitude + (1 - a) * status.drift_score
        status.windows_scored += 1
        status.outlier_windows += int(score.outlier)
        status.last_seen_ms = max(status.last_seen_ms, score.last_seen_ms)
        status.last_window_end_ms = max(status.last_window_end_ms, score.window_end_ms)
        status.window_size_ms = score.window_size_ms
        status.stale = False
        self.newest_end_ms = max(self.newest_end_ms, score.window_end_ms)
        self._changed.add(score.observer_id)

    def mark_stale(self) -> None:
        """Flag observers that have been missing for `stale_windows` windows."""
        for observer_id, status in self.observers.items():
            horizon = status.last_window_end_ms + self.stale_windows * status.window_size_ms
            if not status.stale and status.window_size_ms and horizon <= self.newest_end_ms:
                status.stale = True
                self._changed.add(observer_id)

    def take_expired(self) -> list[str]:
        """Forget the observers not scored for `history_ttl_ms` (event time); their ids."""
        if self.history_ttl_ms is None:
            return []
        horizon = self.newest_end_ms - self.history_ttl_ms
        expired = [o for o, s in self.observers.items() if s.last_window_end_ms < horizon]
        for observer_id in expired:
            del self.observers[observer_id]
            self._changed.discard(observer_id)
        return expired

    def take_changed(self) -> dict[str, ObserverStatus]:
        """Observers whose figures changed since the last call."""
        changed = {o: self.observers[o] for o in self._changed}
        self._changed.clear()
        return changed

    def restore(self, observer_id: str, raw: bytes) -> None:
        status = ObserverStatus.from_bytes(raw)
        self.observers[observer_id] = status
        self.newest_end_ms = max(self.newest_end_ms, status.last_window_end_ms)

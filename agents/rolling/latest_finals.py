"""The newest final record of every (scope, entity, metric, window family) of a partition,
kept for queries for `LATEST_RETENTION_MS` of event time after its window ended. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from agents.rolling.changelog import LatestFinalRecord
from models.codec import right_sized

__all__ = ["LATEST_RETENTION_MS", "LatestFinals", "LatestKey"]

LatestKey = tuple[str, str, str, str]  # (scope, entity, metric, window family name)

# How long the latest final of a window family stays queryable after its window ended
# (event time): a subject that went quiet still answers for a day.
LATEST_RETENTION_MS = 24 * 3600 * 1000


class LatestFinals:
    """Latest final records by key, and which changed since the last snapshot."""

    def __init__(self) -> None:
        self._latest: dict[LatestKey, LatestFinalRecord] = {}
        self._changed: set[LatestKey] = set()
        self._removed: set[LatestKey] = set()

    def record(self, key: LatestKey, end_ms: int, record: bytes) -> None:
        """Keep `record` as the latest final of `key` unless a later window's is kept."""
        previous = self._latest.get(key)
        if previous is None or end_ms >= previous.end_ms:
            self._latest[key] = LatestFinalRecord(end_ms, right_sized(record))
            self._changed.add(key)
            self._removed.discard(key)

    def query(self, scope: str, entity: str, metric: str | None = None) -> list[bytes]:
        """The latest final record of each (metric, window family) of an entity, by key."""
        return [
            latest.record
            for (s, e, m, _), latest in sorted(self._latest.items())
            if s == scope and e == entity and (metric is None or m == metric)
        ]

    def expire(self, watermark_ms: int) -> None:
        """Forget the finals whose window ended `LATEST_RETENTION_MS` before the watermark
        (a sweep over all: the caller runs it at most once an hour of event time; a heap of
        every final recorded held one entry per final of the last day, ~290 million for
        100,000 keys on 1-minute windows)."""
        horizon = watermark_ms - LATEST_RETENTION_MS
        expired = [key for key, latest in self._latest.items() if latest.end_ms < horizon]
        for key in expired:
            del self._latest[key]
            self._changed.discard(key)
            self._removed.add(key)

    def snapshot(self) -> dict[LatestKey, LatestFinalRecord | None]:
        """The finals changed since the last snapshot (None: forgotten)."""
        records: dict[LatestKey, LatestFinalRecord | None] = {
            key: self._latest[key] for key in self._changed
        }
        records.update(dict.fromkeys(self._removed))
        self._changed.clear()
        self._removed.clear()
        return records

    def restore(self, records: Iterable[tuple[LatestKey, LatestFinalRecord]]) -> None:
        """Rebuild from every latest-final record of the changelog."""
        self._latest.update(records)

"""Dedup memory of one partition: the event ids counted in the last `ttl_ms` of receive
time (at most `max_ids` of them), and the journal that persists them in chunks. Pure."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable

from agents.rolling.changelog import JournalRecord

__all__ = ["JOURNAL_CHUNK_IDS", "Dedup"]

# Dedup ids per changelog record of the dedup journal: an id is at most 128 characters, at
# most 6 bytes each in JSON (a control character's escape), so a record stays < 1 MB.
JOURNAL_CHUNK_IDS = 1024


class Dedup:
    """Ids remembered by receive time. The caller tests `key in seen`, calls `expire` when
    the receive time changes (`expired_at`: the last it ran at; a batch shares one) and
    `remember` for an id it counts."""

    def __init__(self, ttl_ms: int, max_ids: int | None) -> None:
        """`ttl_ms` > 0: how long an id is remembered; `max_ids`: at most this many (the
        oldest go first, before their TTL: `evicted` counts them)."""
        self.ttl_ms = ttl_ms
        self.max_ids = max_ids
        self.evicted = 0
        self.expired_at: int | None = None
        self.seen: dict[str, int] = {}  # id -> received ms
        # Ids and received ms in arrival order (for expiry; the newest `_unjournaled` not in
        # the changelog yet), in two deques rather than one of pairs: no tuple per event
        # for the collector to track.
        self._ids: deque[str] = deque()
        self._times: deque[int] = deque()
        self._unjournaled = 0
        self._chunks: deque[tuple[int, str]] = deque()  # (newest received ms, chunk name)
        self._expired_chunks: list[str] = []

    def remember(self, key: str, received_ms: int) -> None:
        """Remember an id counted now (not in `seen`)."""
        self.seen[key] = received_ms
        self._ids.append(key)
        self._times.append(received_ms)
        self._unjournaled += 1
        if self.max_ids is not None and len(self._ids) > self.max_ids:
            self._evict()

    def _evict(self) -> None:
        """Forget the oldest remembered id (over `max_ids`). Its journal chunk stays until
        its TTL; a restore trims to the cap again."""
        received, key = self._times.popleft(), self._ids.popleft()
        if self.seen.get(key) == received:
            del self.seen[key]
        self._unjournaled = min(self._unjournaled, len(self._ids))
        self.evicted += 1

    def expire(self, now_ms: int) -> None:
        """Forget the ids received `ttl_ms` or more before `now_ms`, and their chunks."""
        self.expired_at = now_ms
        horizon = now_ms - self.ttl_ms
        ids, times = self._ids, self._times
        while times and times[0] <= horizon:
            received, key = times.popleft(), ids.popleft()
            if self.seen.get(key) == received:
                del self.seen[key]
        chunks = self._chunks
        while chunks and chunks[0][0] <= horizon:
            self._expired_chunks.append(chunks.popleft()[1])

    def snapshot(self, chunk_id: str) -> dict[str, JournalRecord | None]:
        """The journal chunks to write now, named `<chunk_id>.<n>` (`chunk_id` unique within
        the partition): the ids remembered since the last snapshot, in chunks of at most
        `JOURNAL_CHUNK_IDS` (ids expired before they were journaled are left out: they
        are forgotten anyway); and the expired chunks (None: delete)."""
        new = min(self._unjournaled, len(self._ids))
        ids = list(itertools.islice(reversed(self._ids), new))[::-1]
        times = list(itertools.islice(reversed(self._times), new))[::-1]
        records: dict[str, JournalRecord | None] = {}
        for start in range(0, new, JOURNAL_CHUNK_IDS):
            end = start + JOURNAL_CHUNK_IDS
            name = f"{chunk_id}.{start // JOURNAL_CHUNK_IDS}"
            records[name] = JournalRecord(ids[start:end], times[start:end])
            self._chunks.append((max(times[start:end]), name))
        self._unjournaled = 0
        records.update(dict.fromkeys(self._expired_chunks))
        self._expired_chunks.clear()
        return records

    def restore(self, chunks: Iterable[tuple[str, JournalRecord]]) -> None:
        """Rebuild from every journal chunk of the changelog, keeping the newest `max_ids`."""
        ordered = sorted(
            ((max(chunk.received_ms, default=0), name, chunk) for name, chunk in chunks),
            key=lambda item: item[:2],
        )
        for newest, name, chunk in ordered:
            self._chunks.append((newest, name))
            for key, ms in zip(chunk.ids, chunk.received_ms, strict=True):
                self.seen[key] = ms
        order = sorted((ms, key) for key, ms in self.seen.items())
        if self.max_ids is not None and len(order) > self.max_ids:
            for _, key in order[: len(order) - self.max_ids]:
                del self.seen[key]
            order = order[len(order) - self.max_ids :]
        self._times = deque(ms for ms, _ in order)
        self._ids = deque(key for _, key in order)

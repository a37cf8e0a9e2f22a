"""Event time of one keyed partition: the minimum over the sources (input partitions) that
feed it, idle sources left out. Pure: the rolling agent reports what the sources say."""

from __future__ import annotations

from dataclasses import dataclass

from agents.rolling.changelog import ClockRecord
from models.keyed import SourceReport

__all__ = ["SourceClock", "SourceReport"]


@dataclass(slots=True)
class _Source:
    watermark_ms: int | None = None
    idle_at_ms: int | None = None


class SourceClock:
    """The watermark of a keyed partition, from the reports of every input partition.

    A source holds the watermark back at its own until it reports being idle; an idle
    report counts for `lease_ms` after it was made (the source repeats it while it stays
    idle), so a source whose reports stop (its worker died, a rebalance, the broker out of
    reach) holds the watermark again. A source never heard from holds it at nothing. The
    watermark never goes back; when every source is idle it is the greatest of theirs
    (each has delivered all it had).
    """

    def __init__(self, lease_ms: int) -> None:
        self.lease_ms = lease_ms
        self.sources = 0  # input partitions 0 .. sources-1 feed this partition
        self.watermark_ms: int | None = None
        self._sources: dict[int, _Source] = {}

    def observe(self, report: SourceReport, now_ms: int) -> int | None:
        """Take one source's report; the new watermark when it moved forward, else None."""
        source = self._sources.get(report.source)
        if source is None:
            source = self._sources[report.source] = _Source()
        if report.watermark_ms is not None and (
            source.watermark_ms is None or report.watermark_ms > source.watermark_ms
        ):
            source.watermark_ms = report.watermark_ms
        source.idle_at_ms = report.idle_at_ms
        if report.sources > self.sources:
            self.sources = report.sources
        candidate = self._candidate(now_ms)
        if candidate is not None and (self.watermark_ms is None or candidate > self.watermark_ms):
            self.watermark_ms = candidate
            return candidate
        return None

    def _candidate(self, now_ms: int) -> int | None:
        lowest: int | None = None
        highest: int | None = None
        active = False
        for number in range(self.sources):
            source = self._sources.get(number)
            if source is None:
                return None  # never heard from: it may hold anything
            mark = source.watermark_ms
            if mark is not None and (highest is None or mark > highest):
                highest = mark
            if self._idle(source, now_ms):
                continue
            if mark is None:
                return None  # active, nothing valid read yet
            active = True
            if lowest is None or mark < lowest:
                lowest = mark
        return lowest if active else highest

    def _idle(self, source: _Source, now_ms: int) -> bool:
        at = source.idle_at_ms
        return at is not None and now_ms - at < self.lease_ms

    def all_idle(self, now_ms: int) -> bool:
        """Whether every source is caught up and silent (by reports still fresh): only
        then may the partition close windows by wall clock."""
        if not self.sources:
            return False
        for number in range(self.sources):
            source = self._sources.get(number)
            if source is None or not self._idle(source, now_ms):
                return False
        return True

    def advance(self, watermark_ms: int) -> None:
        """Move the watermark forward by other means (the wall-clock close)."""
        if self.watermark_ms is None or watermark_ms > self.watermark_ms:
            self.watermark_ms = watermark_ms

    def lag_ms(self, now_ms: int) -> dict[int, int | None]:
        """Per source not idle: how far its watermark is behind `now_ms` (None: nothing)."""
        lags: dict[int, int | None] = {}
        for number in range(self.sources):
            source = self._sources.get(number)
            if source is not None and self._idle(source, now_ms):
                continue
            mark = source.watermark_ms if source is not None else None
            lags[number] = None if mark is None else now_ms - mark
        return lags

    # -- snapshot (idle reports are not kept: after a restore every source must report) --

    def snapshot(self) -> ClockRecord:
        """The persisted form: the watermark, source count, per-source marks."""
        marks = {n: s.watermark_ms for n, s in self._sources.items() if s.watermark_ms is not None}
        return ClockRecord(self.watermark_ms, self.sources, marks)

    def restore(self, record: ClockRecord) -> None:
        """From `snapshot()`. A record with no sources (a bare watermark, written before
        per-source clocks) keeps its watermark as the floor until every source reports."""
        self.watermark_ms = record.watermark_ms
        self.sources = record.sources
        self._sources = {n: _Source(watermark_ms=mark) for n, mark in record.marks.items()}
